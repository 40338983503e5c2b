// A bidi WebSocket call from headless Chromium's own WebSocket (through
// puppeteer-core), from a page whose origin is http://127.0.0.1:9 (the
// page is served by request interception, so no web server is needed). For
// test_websocket.py; prints one JSON line.
//
// usage: NODE_PATH=tests/tools/node_modules node ws_browser.cjs WS_URL
const puppeteer = require("puppeteer-core");

async function main() {
  const [url] = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // The page is intercepted, not fetched from 127.0.0.1, so Chromium counts
    // it as public and would block its calls to a local address.
    args: ["--no-sandbox", "--disable-gpu",
           "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"],
  });
  try {
    const page = await browser.newPage();
    await page.setRequestInterception(true);
    page.on("request", (r) =>
      r.url().startsWith("http://127.0.0.1:9/")
        ? r.respond({ status: 200, contentType: "text/html", body: "<!doctype html><title>ws</title>" })
        : r.continue());
    page.on("console", (m) => console.error("console:", m.text()));
    await page.goto("http://127.0.0.1:9/");
    const out = await page.evaluate((url) => new Promise((resolve) => {
      const r = { messages: [], status: null };
      const ws = new WebSocket(url + "?md.x-user=browser", ["moonwire.json"]);
      ws.binaryType = "arraybuffer";
      const texts = ["one", "two"];
      ws.onopen = () => { r.protocol = ws.protocol; ws.send(JSON.stringify({ text: texts.shift() })); };
      ws.onmessage = (e) => {
        if (typeof e.data !== "string") {
          r.status = JSON.parse(new TextDecoder().decode(e.data));
          return;
        }
        r.messages.push(JSON.parse(e.data));
        // the next message only once the previous one came back: a real bidi exchange
        if (texts.length) ws.send(JSON.stringify({ text: texts.shift() }));
        else ws.send("");
      };
      ws.onclose = (e) => { r.close = { code: e.code, reason: e.reason }; resolve(r); };
    }), url);
    console.log(JSON.stringify(out));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
