#!/usr/bin/env python3
"""An independent gRPC client for Marty's services, knowing nothing but what the server says.

It uses only the third-party packages ``grpcio``, ``grpcio-reflection`` and ``protobuf``: the
message and service definitions come from the server's reflection service at run time, never
from Marty's .proto files, so a call that works here works for any reflection-aware client.

Commands (each prints exactly one JSON object on stdout):

    grpc_probe.py list HOST:PORT
        {"services": [...]}: the services the server advertises.
    grpc_probe.py call HOST:PORT package.Service/Method '{"json": "request"}'
        {"ok": true, "response": {...}} or {"ok": false, "code": "NOT_FOUND", "message": "..."}
    grpc_probe.py health HOST:PORT [SERVICE]
        {"status": "SERVING"}: grpc.health.v1 Check.

With mutual TLS, the environment names the files (PEM) and the name the server's certificate
must carry: GRPC_PROBE_CA, GRPC_PROBE_CERT and GRPC_PROBE_KEY (omit the last two to connect
without a client certificate), GRPC_PROBE_SERVER_NAME (e.g. ``csca.marty``).
GRPC_PROBE_METADATA='{"name": "value"}' sends extra metadata with a call.

Exit status: 0 when the call succeeded, 1 when the server answered with an error status,
2 on usage errors or when the server cannot be reached.
"""

import json
import os
import sys

try:
    import grpc
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
except ImportError as missing:
    print(json.dumps({"ok": False, "error": f"{missing}: install scripts/oracle-requirements.txt"}))
    sys.exit(2)

TIMEOUT = 60


def out(value, status=0):
    print(json.dumps(value, sort_keys=True))
    sys.exit(status)


def read(name):
    path = os.environ.get(name)
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def open_channel(target):
    ca = read("GRPC_PROBE_CA")
    if ca is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=read("GRPC_PROBE_KEY"),
        certificate_chain=read("GRPC_PROBE_CERT"),
    )
    options = []
    name = os.environ.get("GRPC_PROBE_SERVER_NAME")
    if name:
        options.append(("grpc.ssl_target_name_override", name))
    return grpc.secure_channel(target, credentials, options)


def reflected(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    return database, descriptor_pool.DescriptorPool(database)


def list_services(target):
    with open_channel(target) as channel:
        database, _ = reflected(channel)
        out({"services": sorted(database.get_services())})


def call(target, full_method, request_json):
    service_name, _, method_name = full_method.partition("/")
    if not method_name:
        out({"ok": False, "error": "method must be package.Service/Method"}, 2)
    with open_channel(target) as channel:
        _, pool = reflected(channel)
        service = pool.FindServiceByName(service_name)
        method = service.FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(request_json, request_class())
        stub = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        try:
            metadata = list(json.loads(os.environ.get("GRPC_PROBE_METADATA", "{}")).items())
            response = stub(request, timeout=TIMEOUT, metadata=metadata)
        except grpc.RpcError as e:
            out({"ok": False, "code": e.code().name, "message": e.details()}, 1)
        out({"ok": True, "response": json_format.MessageToDict(response)})


def health(target, service=""):
    call(target, "grpc.health.v1.Health/Check", json.dumps({"service": service}))


def main(argv):
    try:
        if len(argv) == 2 and argv[0] == "list":
            list_services(argv[1])
        elif len(argv) == 4 and argv[0] == "call":
            call(argv[1], argv[2], argv[3])
        elif len(argv) in (2, 3) and argv[0] == "health":
            health(*argv[1:])
        else:
            out({"ok": False, "error": __doc__.strip().splitlines()[0] + " (see the module docstring)"}, 2)
    except grpc.RpcError as e:
        out({"ok": False, "code": e.code().name, "message": e.details()}, 2)


if __name__ == "__main__":
    main(sys.argv[1:])
