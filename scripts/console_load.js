// Page load times of the console in Debian's Chromium (through playwright-core): each URL is
// loaded COUNT times in one fresh browser context (the first load, which warms the
// connection, is not counted) and the medians of the Navigation Timing figures are printed.
//   node scripts/console_load.js COUNT name=URL [name=URL ...]
// Prints one JSON object: {name: {ttfb_ms, load_ms, bytes}} where ttfb_ms is responseStart
// and load_ms loadEventEnd, both from the navigation's start.
const { chromium } = require('playwright-core');

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

(async () => {
  const [count, ...pages] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  const out = {};
  for (const spec of pages) {
    const eq = spec.indexOf('=');
    const name = spec.slice(0, eq);
    const url = spec.slice(eq + 1);
    const context = await browser.newContext();
    const page = await context.newPage();
    const ttfb = []; const load = []; let bytes = 0;
    for (let i = 0; i <= Number(count); i++) {
      const response = await page.goto(url, { waitUntil: 'load' });
      if (!response || response.status() !== 200) throw new Error(`${url}: ${response && response.status()}`);
      const t = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        return { ttfb: n.responseStart, load: n.loadEventEnd, bytes: n.transferSize };
      });
      if (i > 0) { ttfb.push(t.ttfb); load.push(t.load); bytes = t.bytes; }
    }
    out[name] = { ttfb_ms: median(ttfb), load_ms: median(load), bytes };
    await context.close();
  }
  await browser.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
