// The console in a real browser: every page given on the command line is loaded in Debian's
// Chromium (through playwright-core) at each viewport, its console messages and failed
// requests are collected, axe-core checks the basics (WCAG 2 A and AA: labels, contrast,
// headings, landmarks), and a screenshot is written.
//   node scripts/console_check.js OUT_DIR name=URL [name=URL ...]
// Prints one JSON object: {"pages": [{name, viewport, console_errors, failed_requests,
// violations: [{id, impact, help, nodes}]}]}; exit 0 (the caller decides what is a failure).
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');

const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const VIEWPORTS = [{ width: 1280, height: 800 }, { width: 390, height: 844 }];

(async () => {
  const [out, ...pages] = process.argv.slice(2);
  fs.mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  const results = [];
  for (const spec of pages) {
    const eq = spec.indexOf('=');
    const name = spec.slice(0, eq);
    const url = spec.slice(eq + 1);
    for (const viewport of VIEWPORTS) {
      // The console forbids inline scripts (its CSP); axe-core is the test's, not the page's.
      const context = await browser.newContext({ viewport, bypassCSP: true });
      const page = await context.newPage();
      const consoleErrors = [];
      const failed = [];
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(m.text()); });
      page.on('pageerror', (e) => consoleErrors.push(String(e)));
      page.on('requestfailed', (r) => failed.push(r.url()));
      page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
      await page.goto(url, { waitUntil: 'load' });
      await page.addScriptTag({ content: AXE });
      const axe = await page.evaluate(async () =>
        // eslint-disable-next-line no-undef
        await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } }));
      const file = path.join(out, `${name}-${viewport.width}x${viewport.height}.png`);
      await page.screenshot({ path: file, fullPage: true });
      results.push({
        name,
        viewport: `${viewport.width}x${viewport.height}`,
        screenshot: file,
        console_errors: consoleErrors,
        failed_requests: failed,
        violations: axe.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length })),
      });
      await context.close();
    }
  }
  await browser.close();
  process.stdout.write(JSON.stringify({ pages: results }) + '\n');
})().catch((e) => { console.error(e); process.exit(2); });
