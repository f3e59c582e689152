//! Privilege drift that neither the matrix of `verify` nor the basic hardening of `setup`
//! sees: what a role can do through objects, columns, schemas, functions, default privileges,
//! memberships and settings that someone with more rights changed by hand.
//!
//! Decide, then act: [`database_drift`] and [`role_drift`] read the catalogs and return every
//! deviation with the statement that repairs it (when a repair is safe). `setup` runs the
//! repairs and names what it could not repair; `verify` reports every deviation as a failed
//! audit check. Both therefore agree on what drift is.

use marty_config::{Role, Service};
use sqlx::PgConnection;

use crate::sql::ident;
use crate::{DbError, SqlContext};

/// One deviation from the role model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// What kind of check found it, e.g. "object ownership".
    pub area: &'static str,
    /// The database or role concerned.
    pub scope: String,
    /// What is wrong, in one line.
    pub problem: String,
    /// The statement that repairs it, when a repair is safe.
    pub repair: Option<String>,
    /// What the repair did, for `setup`'s report.
    pub repaired: String,
}

/// Objects, columns, schemas and functions of these schemas are the service's own; the
/// catalogs' are PostgreSQL's.
pub(crate) const OWN_SCHEMAS: &str = "n.nspname not in ('pg_catalog', 'information_schema')
     and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp\\_%'";

/// A grantee as SQL: `PUBLIC` or a quoted role name.
pub(crate) fn grantee_sql(grantee: &str) -> String {
    if grantee == "PUBLIC" {
        "PUBLIC".to_owned()
    } else {
        ident(grantee)
    }
}

/// The ALTER statement's object kind for a pg_class relkind.
fn relation_kind(relkind: &str) -> &'static str {
    match relkind {
        "v" => "VIEW",
        "m" => "MATERIALIZED VIEW",
        "S" => "SEQUENCE",
        "f" => "FOREIGN TABLE",
        _ => "TABLE",
    }
}

/// The ALTER statement's object kind for a pg_proc prokind.
fn routine_kind(prokind: &str) -> &'static str {
    match prokind {
        "p" => "PROCEDURE",
        "a" => "AGGREGATE",
        _ => "FUNCTION",
    }
}

/// The object kind of ALTER DEFAULT PRIVILEGES for a pg_default_acl objtype.
fn default_acl_kind(objtype: &str) -> &'static str {
    match objtype {
        "S" => "SEQUENCES",
        "f" => "FUNCTIONS",
        "T" => "TYPES",
        "n" => "SCHEMAS",
        _ => "TABLES",
    }
}

/// Privileges the default privileges of a service give, and to whom (DESIGN §3.3).
fn wanted_default(
    objtype: &str,
    grantee: &str,
    privilege: &str,
    app: &str,
    readonly: &str,
) -> bool {
    match (objtype, privilege) {
        ("r", "SELECT" | "INSERT" | "UPDATE" | "DELETE") if grantee == app => true,
        ("S", "SELECT" | "USAGE") if grantee == app => true,
        ("r" | "S", "SELECT") if grantee == readonly => true,
        _ => false,
    }
}

/// Deviations inside the database of `service`, read over `conn` (connected to it).
pub async fn database_drift(
    conn: &mut PgConnection,
    service: Service,
    database: &str,
) -> Result<Vec<Drift>, DbError> {
    let owner = service.role_name(Role::Owner);
    let app = service.role_name(Role::App);
    let readonly = service.role_name(Role::Readonly);
    let own = [owner.as_str(), app.as_str(), readonly.as_str()];
    let scope = database.to_owned();
    let mut out = Vec::new();
    let mut drift = |area, problem: String, repair: Option<String>, repaired: String| {
        out.push(Drift {
            area,
            scope: scope.clone(),
            problem,
            repair,
            repaired,
        })
    };

    // Event triggers run their function in every session that changes the schema — the
    // administrator's too, when `setup` repairs something. Disabled first, before any repair.
    let triggers: Vec<(String, String, String)> = sqlx::query_as(
        "select quote_ident(evtname), pg_get_userbyid(evtowner)::text, evtfoid::regproc::text
           from pg_event_trigger where evtenabled <> 'D' order by 1",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading event triggers"))?;
    for (name, trigger_owner, function) in triggers {
        drift(
            "event triggers",
            format!(
                "event trigger {name} (owned by {trigger_owner}) runs {function} in every session that changes the schema, an administrator's included"
            ),
            Some(format!("ALTER EVENT TRIGGER {name} DISABLE")),
            format!("event trigger {name}: disabled"),
        );
    }

    // Settings of the database itself (`ALTER DATABASE … SET`, `ALTER ROLE ALL IN DATABASE …
    // SET`) apply to every role in it: `session_replication_role = replica` turns off the
    // app role's foreign keys and triggers, a `search_path` redirects its queries.
    let settings: Option<Vec<String>> = sqlx::query_scalar(
        "select setconfig from pg_db_role_setting
          where setrole = 0 and setdatabase = (select oid from pg_database where datname = current_database())",
    )
    .fetch_optional(&mut *conn)
    .await
    .context(|| format!("{database}: reading the database's settings"))?;
    if let Some(settings) = settings.filter(|s| !s.is_empty()) {
        drift(
            "database settings",
            format!(
                "the database sets {} for every role in it",
                settings.join(", ")
            ),
            Some(format!("ALTER DATABASE {} RESET ALL", ident(database))),
            format!("reset the database's settings ({})", settings.join(", ")),
        );
    }

    // A template can be copied by anyone allowed to create databases.
    let template: bool = sqlx::query_scalar(
        "select datistemplate from pg_database where datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("{database}: reading the template flag"))?;
    if template {
        drift(
            "template flag",
            "the database is marked as a template: anyone allowed to create databases can copy it"
                .into(),
            Some(format!(
                "ALTER DATABASE {} IS_TEMPLATE false",
                ident(database)
            )),
            "cleared the template mark".into(),
        );
    }

    // A routine or operator named like one of the catalogs': a session whose search_path
    // puts its schema first runs it instead (Marty's own sessions never do).
    let shadows: Vec<String> = sqlx::query_scalar(&format!(
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where {OWN_SCHEMAS}
            and exists (select 1 from pg_proc c where c.pronamespace = 'pg_catalog'::regnamespace and c.proname = p.proname)
         union all
         select o.oid::regoperator::text from pg_operator o join pg_namespace n on n.oid = o.oprnamespace
          where {OWN_SCHEMAS}
         order by 1"
    ))
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading routines that shadow the catalogs"))?;
    for shadow in shadows {
        drift(
            "routines named like the catalogs'",
            format!(
                "{shadow} has the name of a routine or operator of pg_catalog: a session that searches its schema first runs it instead; drop it"
            ),
            None,
            String::new(),
        );
    }

    // Publications and subscriptions copy data out of (or into) the database by logical
    // replication, around every privilege of the role model.
    let replication: Vec<String> = sqlx::query_scalar(
        "select 'publication ' || quote_ident(pubname) from pg_publication
         union all
         select 'subscription ' || quote_ident(subname) from pg_subscription
          where subdbid = (select oid from pg_database where datname = current_database())
         order by 1",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading publications and subscriptions"))?;
    for item in replication {
        drift(
            "logical replication",
            format!(
                "{item} exists: logical replication moves the service's data past the role model; drop it"
            ),
            None,
            String::new(),
        );
    }

    // Large objects: any role may create them (with execute on lo_create & co., PUBLIC's by
    // default), so a readonly role could write data; and their own ACLs grant access.
    let objects: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "select l.oid::text, pg_get_userbyid(l.lomowner)::text,
                array(select case when x.grantee = 0 then 'PUBLIC' else pg_get_userbyid(x.grantee)::text end
                               || ' ' || x.privilege_type
                        from aclexplode(l.lomacl) x where x.grantee <> l.lomowner order by 1)
           from pg_largeobject_metadata l order by l.oid",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading large objects"))?;
    for (oid, lo_owner, grants) in objects {
        if lo_owner != owner {
            drift(
                "large objects",
                format!("large object {oid} is owned by {lo_owner}"),
                Some(format!(
                    "ALTER LARGE OBJECT {oid} OWNER TO {}",
                    ident(&owner)
                )),
                format!("large object {oid}: owner changed from {lo_owner} to {owner}"),
            );
        }
        for grant in grants {
            let (grantee, privilege) = grant.rsplit_once(' ').unwrap_or((grant.as_str(), ""));
            drift(
                "large objects",
                format!("{privilege} on large object {oid} is granted to {grantee}"),
                Some(format!(
                    "REVOKE {privilege} ON LARGE OBJECT {oid} FROM {}",
                    grantee_sql(grantee)
                )),
                format!("large object {oid}: revoked {privilege} from {grantee}"),
            );
        }
    }
    // Creating large objects is not a privilege PostgreSQL checks, only EXECUTE on the
    // functions that do it; only a superuser can revoke that (the functions are the
    // bootstrap superuser's), so the check applies when the administrator is one.
    let superuser: bool =
        sqlx::query_scalar("select rolsuper from pg_roles where rolname = current_user")
            .fetch_one(&mut *conn)
            .await
            .context(|| format!("{database}: reading the administrator's attributes"))?;
    if superuser {
        let creators: Vec<String> = sqlx::query_scalar(
            "select p.oid::regprocedure::text from pg_proc p
              where p.pronamespace = 'pg_catalog'::regnamespace
                and p.proname in ('lo_create', 'lo_creat', 'lo_from_bytea', 'lo_import')
                and has_function_privilege('public', p.oid, 'EXECUTE')
              order by 1",
        )
        .fetch_all(&mut *conn)
        .await
        .context(|| format!("{database}: reading who may create large objects"))?;
        if !creators.is_empty() {
            let list = creators.join(", ");
            drift(
                "large objects",
                format!(
                    "every role may create large objects (PUBLIC may execute {list}), so even the readonly role can write data"
                ),
                Some(format!("REVOKE EXECUTE ON FUNCTION {list} FROM PUBLIC")),
                format!("revoked EXECUTE on {list} from PUBLIC"),
            );
        }
    }

    // Objects owned by anyone but the service's owner: their owner can change them at will
    // (an app role owning a table can ALTER it, grant it, drop its constraints).
    let owned: Vec<(String, String, String, String)> = sqlx::query_as(&format!(
        "select kind, subkind, name, owner from (
            select 'relation' as kind, c.relkind::text as subkind, c.oid::regclass::text as name,
                   pg_get_userbyid(c.relowner)::text as owner, 'pg_class'::regclass as classid, c.oid as objid
              from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where {OWN_SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
            union all
            -- SECURITY DEFINER routines are not given to the owner: that would change whose
            -- privileges they run with. They are reported below, for a person to decide.
            select 'routine', p.prokind::text, p.oid::regprocedure::text,
                   pg_get_userbyid(p.proowner)::text, 'pg_proc'::regclass, p.oid
              from pg_proc p join pg_namespace n on n.oid = p.pronamespace
             where {OWN_SCHEMAS} and not p.prosecdef
               -- Nor functions of event triggers (handled below).
               and p.prorettype <> 'pg_catalog.event_trigger'::pg_catalog.regtype
            union all
            select 'type', t.typtype::text, t.oid::regtype::text,
                   pg_get_userbyid(t.typowner)::text, 'pg_type'::regclass, t.oid
              from pg_type t join pg_namespace n on n.oid = t.typnamespace
             where {OWN_SCHEMAS}
               and (t.typtype in ('d', 'e', 'r')
                    or (t.typtype = 'c' and (select relkind from pg_class where oid = t.typrelid) = 'c'))
            union all
            select 'schema', '', quote_ident(n.nspname), pg_get_userbyid(n.nspowner)::text,
                   'pg_namespace'::regclass, n.oid
              from pg_namespace n
             where {OWN_SCHEMAS}
         ) o
         where owner <> $1
           and not (kind = 'schema' and name = 'public' and owner = 'pg_database_owner')
           -- Members of an extension belong to whoever installed the extension.
           and not exists (select 1 from pg_depend d
                            where d.classid = o.classid and d.objid = o.objid and d.deptype = 'e')
         order by kind, name"
    ))
    .bind(&owner)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading object owners"))?;
    for (kind, subkind, name, current) in owned {
        let (noun, alter) = match kind.as_str() {
            "relation" => (
                relation_kind(&subkind).to_lowercase(),
                relation_kind(&subkind),
            ),
            "routine" => (
                routine_kind(&subkind).to_lowercase(),
                routine_kind(&subkind),
            ),
            "type" if subkind == "d" => ("domain".to_owned(), "DOMAIN"),
            "type" => ("type".to_owned(), "TYPE"),
            _ => ("schema".to_owned(), "SCHEMA"),
        };
        drift(
            "object ownership",
            format!("{noun} {name} is owned by {current}, not by {owner}"),
            Some(format!("ALTER {alter} {name} OWNER TO {}", ident(&owner))),
            format!("{noun} {name}: owner changed from {current} to {owner}"),
        );
    }

    // The owner's own privileges on its relations and its database: revoked, the owner can
    // no longer migrate, and `verify` would report the owner denied on its own data.
    let missing: Vec<(String, String, String)> = sqlx::query_as(&format!(
        "select c.oid::regclass::text, c.relkind::text, string_agg(d.privilege_type, ', ' order by d.privilege_type)
           from pg_class c join pg_namespace n on n.oid = c.relnamespace,
                aclexplode(acldefault((case when c.relkind = 'S' then 's' else 'r' end)::\"char\", c.relowner)) d
          where {OWN_SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
            and c.relowner = (select oid from pg_roles where rolname = $1)
            and c.relacl is not null and d.grantee = c.relowner
            and not exists (select 1 from aclexplode(c.relacl) a
                             where a.grantee = c.relowner and a.privilege_type = d.privilege_type)
          group by 1, 2 order by 1"
    ))
    .bind(&owner)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading the owner's privileges"))?;
    for (name, relkind, privileges) in missing {
        let object = if relkind == "S" { "SEQUENCE" } else { "TABLE" };
        drift(
            "owner privileges",
            format!(
                "{owner} lacks {privileges} on its own {} {name}",
                object.to_lowercase()
            ),
            Some(format!("GRANT ALL ON {object} {name} TO {}", ident(&owner))),
            format!(
                "{} {name}: granted {privileges} back to its owner {owner}",
                object.to_lowercase()
            ),
        );
    }
    let database_missing: Option<String> = sqlx::query_scalar(
        "select string_agg(d.privilege_type, ', ' order by d.privilege_type)
           from pg_database db, aclexplode(acldefault('d', db.datdba)) d
          where db.datname = current_database() and db.datacl is not null and d.grantee = db.datdba
            and not exists (select 1 from aclexplode(db.datacl) a
                             where a.grantee = db.datdba and a.privilege_type = d.privilege_type)",
    )
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("{database}: reading the owner's database privileges"))?;
    if let Some(privileges) = database_missing {
        drift(
            "owner privileges",
            format!("the database's owner lacks {privileges} on it"),
            Some(format!(
                "GRANT ALL ON DATABASE {} TO {}",
                ident(database),
                ident(&owner)
            )),
            format!("granted {privileges} on the database back to its owner {owner}"),
        );
    }

    // Column-level grants: nothing in the role model needs one, and a column grant gives
    // a role access that table-level checks do not show.
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(&format!(
        "select c.oid::regclass::text, quote_ident(a.attname),
                case when x.grantee = 0 then 'PUBLIC' else pg_get_userbyid(x.grantee)::text end,
                string_agg(x.privilege_type, ', ' order by x.privilege_type)
           from pg_attribute a join pg_class c on c.oid = a.attrelid
                join pg_namespace n on n.oid = c.relnamespace, aclexplode(a.attacl) x
          where {OWN_SCHEMAS} and a.attacl is not null
          group by 1, 2, 3 order by 1, 2, 3"
    ))
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading column grants"))?;
    for (table, column, grantee, privilege) in columns {
        drift(
            "column grants",
            format!("{privilege} on column {table}.{column} is granted to {grantee}"),
            Some(format!(
                "REVOKE {privilege} ({column}) ON {table} FROM {}",
                grantee_sql(&grantee)
            )),
            format!("column {table}.{column}: revoked {privilege} from {grantee}"),
        );
    }

    // Schemas other than public: nobody but their owner may create in them or use them.
    let schemas: Vec<(String, String, String)> = sqlx::query_as(&format!(
        "select quote_ident(n.nspname),
                case when x.grantee = 0 then 'PUBLIC' else pg_get_userbyid(x.grantee)::text end,
                string_agg(x.privilege_type, ', ' order by x.privilege_type)
           from pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) x
          where {OWN_SCHEMAS} and n.nspname <> 'public' and x.grantee <> n.nspowner
          group by 1, 2 order by 1, 2"
    ))
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading schema privileges"))?;
    for (schema, grantee, privilege) in schemas {
        if grantee == owner {
            continue;
        }
        drift(
            "schema privileges",
            format!("{privilege} on schema {schema} is granted to {grantee}"),
            Some(format!(
                "REVOKE {privilege} ON SCHEMA {schema} FROM {}",
                grantee_sql(&grantee)
            )),
            format!("schema {schema}: revoked {privilege} from {grantee}"),
        );
    }

    // SECURITY DEFINER routines run with their owner's privileges for whoever may call them.
    let definers: Vec<(String, String, String, Vec<String>)> = sqlx::query_as(&format!(
        "select p.oid::regprocedure::text, p.prokind::text, pg_get_userbyid(p.proowner)::text,
                array(select case when x.grantee = 0 then 'PUBLIC' else pg_get_userbyid(x.grantee)::text end
                        from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
                       where x.privilege_type = 'EXECUTE' and x.grantee <> p.proowner order by 1)
           from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where {OWN_SCHEMAS} and p.prosecdef
          order by 1"
    ))
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading SECURITY DEFINER routines"))?;
    for (name, prokind, routine_owner, executors) in definers {
        let kind = routine_kind(&prokind);
        if routine_owner != owner {
            drift(
                "SECURITY DEFINER routines",
                format!(
                    "{} {name} is SECURITY DEFINER and owned by {routine_owner}: it runs with {routine_owner}'s privileges for anyone who may call it; drop it, or let {owner} create it",
                    kind.to_lowercase()
                ),
                None,
                String::new(),
            );
        }
        let foreign: Vec<&String> = executors
            .iter()
            .filter(|e| !own.contains(&e.as_str()))
            .collect();
        if !foreign.is_empty() {
            let names = foreign
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            drift(
                "SECURITY DEFINER routines",
                format!(
                    "{} {name} is SECURITY DEFINER and executable by {names}",
                    kind.to_lowercase()
                ),
                Some(format!(
                    "REVOKE EXECUTE ON {kind} {name} FROM {}",
                    foreign
                        .iter()
                        .map(|e| grantee_sql(e))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                format!(
                    "{} {name}: revoked EXECUTE from {names}",
                    kind.to_lowercase()
                ),
            );
        }
    }

    // Default privileges: only the owner's, in schema public, for the service's own roles.
    // PUBLIC's EXECUTE on functions and USAGE on types are PostgreSQL's built-in defaults,
    // which every explicit entry repeats.
    let defaults: Vec<(String, Option<String>, String, String, String)> = sqlx::query_as(
        "select pg_get_userbyid(d.defaclrole)::text,
                case when d.defaclnamespace = 0 then null else quote_ident(n.nspname) end,
                d.defaclobjtype::text,
                case when x.grantee = 0 then 'PUBLIC' else pg_get_userbyid(x.grantee)::text end,
                x.privilege_type
           from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace,
                aclexplode(d.defaclacl) x
          where x.grantee <> d.defaclrole
          order by 1, 2, 3, 4, 5",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("{database}: reading default privileges"))?;
    // (role, schema, object type, grantee) → privileges: one drift per ALTER statement.
    type DefaultAclKey = (String, Option<String>, String, String);
    let mut grouped: Vec<(DefaultAclKey, Vec<String>)> = Vec::new();
    for (role, schema, objtype, grantee, privilege) in defaults {
        let builtin = grantee == "PUBLIC"
            && matches!(
                (objtype.as_str(), privilege.as_str()),
                ("f", "EXECUTE") | ("T", "USAGE")
            );
        let wanted = role == owner
            && schema.as_deref() == Some("public")
            && wanted_default(&objtype, &grantee, &privilege, &app, &readonly);
        if builtin || wanted {
            continue;
        }
        let key = (role, schema, objtype, grantee);
        match grouped.iter_mut().find(|(k, _)| *k == key) {
            Some((_, privileges)) => privileges.push(privilege),
            None => grouped.push((key, vec![privilege])),
        }
    }
    for ((role, schema, objtype, grantee), privileges) in grouped {
        let privileges = privileges.join(", ");
        let kind = default_acl_kind(&objtype);
        let (in_schema, where_) = match &schema {
            Some(s) => (format!(" IN SCHEMA {s}"), format!("in schema {s}")),
            None => (String::new(), "in every schema".to_owned()),
        };
        drift(
            "default privileges",
            format!(
                "new {} of {role} {where_} get {privileges} for {grantee}",
                kind.to_lowercase()
            ),
            Some(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {}{in_schema} REVOKE {privileges} ON {kind} FROM {}",
                ident(&role),
                grantee_sql(&grantee)
            )),
            format!(
                "default privileges: revoked {privileges} on new {} of {role} {where_} from {grantee}",
                kind.to_lowercase()
            ),
        );
    }
    Ok(out)
}

/// Deviations of the whole server that reach the service roles: settings made for every role.
pub async fn cluster_drift(conn: &mut PgConnection) -> Result<Vec<Drift>, DbError> {
    let mut out = Vec::new();
    // `ALTER ROLE ALL SET …` applies to every role of the cluster, the services' included.
    // Other applications may set harmless things there; these change what a role's
    // statements mean or do.
    let everyone: Vec<String> = sqlx::query_scalar(
        "select unnest(setconfig) from pg_db_role_setting where setrole = 0 and setdatabase = 0",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading settings of every role".into())?;
    for setting in everyone {
        let key = setting.split('=').next().unwrap_or_default();
        if matches!(
            key,
            "session_replication_role"
                | "search_path"
                | "row_security"
                | "session_preload_libraries"
                | "local_preload_libraries"
                | "default_transaction_read_only"
        ) {
            out.push(Drift {
                area: "settings of every role",
                scope: "every role".into(),
                problem: format!(
                    "every role of the server has {setting} (ALTER ROLE ALL SET), the services' included; reset it, or override it for the service roles"
                ),
                repair: None,
                repaired: String::new(),
            });
        }
    }

    Ok(out)
}

/// Deviations of service roles (`roles`) that live in the cluster, not in one database:
/// members they should not have, settings, password expiry. `admin` is the administrative
/// role, which may be a member of service roles to manage them.
pub async fn role_drift(
    conn: &mut PgConnection,
    roles: &[String],
    admin: &str,
) -> Result<Vec<Drift>, DbError> {
    // Members that are themselves service roles are revoked by `setup`'s membership check and
    // reported by the audit's: only members from outside are this check's.
    let service_roles: Vec<String> = Service::ALL
        .iter()
        .flat_map(|s| Role::ALL.map(|r| s.role_name(r)))
        .collect();
    let mut out = Vec::new();

    // A role outside Marty's twelve that is a member of a service role acts as that role:
    // `GRANT marty_csca_app TO mallory` gives mallory the CSCA's data.
    let members: Vec<(String, String)> = sqlx::query_as(
        "select r.rolname::text, m.rolname::text
           from pg_auth_members am
           join pg_roles r on r.oid = am.roleid
           join pg_roles m on m.oid = am.member
          where r.rolname = any($1) and not m.rolname = any($3) and m.rolname <> $2
            and m.rolname <> (r.rolname || '_alt')
          order by 1, 2",
    )
    .bind(roles)
    .bind(admin)
    .bind(&service_roles)
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading members of the service roles".into())?;
    for (role, member) in members {
        out.push(Drift {
            area: "members of service roles",
            scope: role.clone(),
            problem: format!("{member} is a member of {role} and can act as it"),
            repair: Some(format!("REVOKE {} FROM {}", ident(&role), ident(&member))),
            repaired: format!("revoked membership of {member} in {role}"),
        });
    }

    // Settings: the app role's two timeouts and nothing else, in no database in particular.
    // A per-database setting (`ALTER ROLE … IN DATABASE … SET`) overrides the role's own.
    let settings: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "select r.rolname::text, d.datname::text, unnest(s.setconfig)
           from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
           left join pg_database d on d.oid = s.setdatabase
          where r.rolname = any($1)
          order by 1, 2, 3",
    )
    .bind(roles)
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading the service roles' settings".into())?;
    let mut in_database: std::collections::BTreeMap<(String, String), Vec<String>> =
        std::collections::BTreeMap::new();
    for (role, database, setting) in settings {
        let key = setting.split('=').next().unwrap_or_default().to_owned();
        if let Some(database) = database {
            in_database
                .entry((role, database))
                .or_default()
                .push(setting);
            continue;
        }
        let is_app = Service::parse_role_name(&role).map(|(_, r)| r) == Some(Role::App);
        if is_app
            && matches!(
                key.as_str(),
                "statement_timeout" | "idle_in_transaction_session_timeout"
            )
        {
            continue;
        }
        let valid_name = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        out.push(Drift {
            area: "role settings",
            scope: role.clone(),
            problem: format!("{role} has the setting {setting}"),
            repair: valid_name.then(|| format!("ALTER ROLE {} RESET {key}", ident(&role))),
            repaired: format!("reset {key}"),
        });
    }
    for ((role, database), settings) in in_database {
        out.push(Drift {
            area: "role settings",
            scope: role.clone(),
            problem: format!("{role} has {} in database {database}", settings.join(", ")),
            repair: Some(format!(
                "ALTER ROLE {} IN DATABASE {} RESET ALL",
                ident(&role),
                ident(&database)
            )),
            repaired: format!("reset its settings in database {database}"),
        });
    }

    // A password that expires: `setup` would otherwise "reset" it at every run (the login
    // with it fails) and never converge, and the service stops at the expiry.
    let expiring: Vec<(String, String)> = sqlx::query_as(
        "select rolname::text, rolvaliduntil::text from pg_roles
          where rolname = any($1) and rolvaliduntil is not null and rolvaliduntil <> 'infinity'
          order by 1",
    )
    .bind(roles)
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading password expiry of the service roles".into())?;
    for (role, until) in expiring {
        out.push(Drift {
            area: "password expiry",
            scope: role.clone(),
            problem: format!("{role}'s password is valid only until {until}"),
            repair: Some(format!(
                "ALTER ROLE {} VALID UNTIL 'infinity'",
                ident(&role)
            )),
            repaired: format!("password expiry {until} removed"),
        });
    }
    Ok(out)
}
