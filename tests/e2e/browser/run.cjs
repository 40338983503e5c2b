// Drives Debian's chromium (headless, through puppeteer-core) for
// test_browser.py: loads each page URL given in turn, in one browser, waits
// for the page's window.__done and prints one JSON line:
// {"<url>": {"results": ..., "console": [...], "requests": ["METHOD URL", ...]}}.
//
// usage: NODE_PATH=tests/tools/node_modules node run.cjs URL...
const puppeteer = require("puppeteer-core");

async function main() {
  const urls = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // root in CI: chromium's sandbox needs an unprivileged user
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  const out = {};
  try {
    const page = await browser.newPage();
    let lines = [], requests = [];
    // what went on the wire (preflights included), to tell GET from POST
    const cdp = await page.createCDPSession();
    await cdp.send("Network.enable");
    cdp.on("Network.requestWillBeSent", (e) => requests.push(e.request.method + " " + e.request.url));
    page.on("console", (m) => lines.push(m.text()));
    page.on("pageerror", (e) => lines.push("pageerror: " + e.message));
    page.on("requestfailed", (r) => lines.push("requestfailed: " + r.method() + " " + r.url() +
                                                " " + (r.failure() && r.failure().errorText)));
    for (const url of urls) {
      lines = [];
      requests = [];
      await page.goto(url, { waitUntil: "load" });
      await page.waitForFunction("window.__done === true", { timeout: 60000 });
      out[url] = { results: await page.evaluate(() => window.__results), console: lines,
                   requests };
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
