// Drives the browser console (/console) in headless chromium with
// puppeteer-core, as a person would: picks a method, edits the request,
// sends, reads what the page shows. Prints one JSON line of observations
// per step for test_console.py to assert.
//
// usage: NODE_PATH=tests/tools/node_modules node console_check.cjs BASE_URL SCREENSHOT.png
// The reload step prints {"step":"reload"} and waits for a line on stdin,
// which the test writes once the server has reloaded with a new method.
const puppeteer = require("puppeteer-core");
const readline = require("node:readline");

const [base, shot] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

// What the page shows after a call.
async function result(page) {
  return page.evaluate(() => ({
    status: document.getElementById("status").textContent,
    messages: [...document.querySelectorAll("#messages .message")].map((e) =>
      JSON.parse(e.lastChild.textContent)),
    error: document.getElementById("error").hidden ? null : {
      message: document.getElementById("error-message").textContent,
      details: [...document.querySelectorAll("#error-details li")].map((e) => e.textContent),
    },
    headers: [...document.querySelectorAll("#headers tr")].map((r) =>
      [...r.cells].map((c) => c.textContent)),
    trailers: [...document.querySelectorAll("#trailers tr")].map((r) =>
      [...r.cells].map((c) => c.textContent)),
    timing: document.getElementById("timing").textContent,
  }));
}

// Selects a method, puts a request in the editor, sends, waits for the end.
async function call(page, path, request, metadata, deadline) {
  await page.select("#method", path);
  const template = await page.$eval("#request", (e) => e.value);
  await page.$eval("#request", (e, v) => { e.value = v; }, JSON.stringify(request));
  await page.$eval("#metadata", (e, v) => { e.value = v; }, metadata || "");
  await page.$eval("#deadline", (e, v) => { e.value = v; }, deadline || "");
  await page.$eval("#timing", (e) => { e.textContent = ""; });
  await page.click("#send");
  // The send button comes back when the call has ended.
  await page.waitForFunction(() => !document.getElementById("send").disabled &&
    document.getElementById("timing").textContent !== "", { timeout: 10000 });
  return { template, ...(await result(page)) };
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 800 });
    const problems = [];
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    // Chromium logs every 4xx answer as an error of its own ("Failed to load
    // resource"): the error step's 400 is expected; anything else is not.
    page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") &&
      problems.push("console: " + m.text()));
    page.on("response", (r) => r.status() >= 400 && !r.url().endsWith("/console.Demo/Fail") &&
      problems.push("HTTP " + r.status() + " " + r.url()));
    await page.goto(base + "/console", { waitUntil: "load" });
    await page.waitForSelector('#method option[value="/helloworld.Greeter/SayHello"]',
                              { timeout: 10000 });
    const methods = await page.$$eval("#method option", (os) => os.map((o) => o.value));
    const generation = await page.$eval("#generation", (e) => e.textContent);

    // Unary: helloworld's SayHello, with metadata.
    const hello = await call(page, "/helloworld.Greeter/SayHello", { name: "console" },
                             "x-from: browser");
    await page.screenshot({ path: shot, fullPage: true });
    say({ step: "load", methods, generation, ...hello });

    // A server stream: each message's arrival time, seen by the page itself.
    await page.evaluate(() => {
      window.arrivals = [];
      new MutationObserver(() => {
        const n = document.querySelectorAll("#messages .message").length;
        if (n > window.arrivals.length) window.arrivals.push({ n, at: performance.now(),
          status: document.getElementById("status").textContent });
      }).observe(document.getElementById("messages"), { childList: true });
    });
    const stream = await call(page, "/console.Demo/Count", { n: 3, pause: 0.3 });
    stream.arrivals = await page.evaluate(() => window.arrivals);
    say({ step: "stream", ...stream });

    // Metadata, response headers and trailers; a client stream; a deadline.
    say({ step: "echo", ...(await call(page, "/console.Demo/Echo", {}, "x-from: browser")) });
    say({ step: "sum", ...(await call(page, "/console.Demo/Sum", [{ n: 1 }, { n: 2 }, { n: 3 }])) });
    say({ step: "deadline",
          ...(await call(page, "/console.Demo/Count", { n: 3, pause: 0.5 }, "", "250")) });

    // An error with details.
    await call(page, "/console.Demo/Fail", { name: "" });
    // The details are decoded by the server after the call's end.
    await page.waitForSelector("#error-details li[data-decoded]", { timeout: 5000 });
    say({ step: "error", ...(await result(page)) });

    // A reload that adds a method: the page shows it without being reloaded.
    say({ step: "reload" });
    await nextLine();
    const t0 = Date.now();
    await page.waitForSelector('#method option[value="/console.Demo/Added"]', { timeout: 15000 });
    const seenMs = Date.now() - t0;
    const added = await call(page, "/console.Demo/Added", { name: "new" });
    say({ step: "reloaded", seenMs, generation: await page.$eval("#generation", (e) => e.textContent),
          ...added });
    say({ step: "done", problems });
  } finally {
    await browser.close();
    lines.close();
  }
}

main().catch((e) => {
  say({ step: "failed", error: String(e && e.stack || e) });
  process.exit(1);
});
