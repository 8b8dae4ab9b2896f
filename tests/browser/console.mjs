// Drives the built-in console in Debian's Chromium, headless: the services page with its
// table and dependency graph, a service page whose charts render with data (the forecast band
// included) and whose replicas come with reasons, the anomalies with one explained, and a SQL
// query that returns rows. Prints
// one line per check; exits non-zero on the first failure. Screenshots go to OUT_DIR.
//
// node tests/browser/console.mjs BASE_URL SERVICE OUT_DIR
import { chromium } from "playwright-core";

const [base, service, outDir] = process.argv.slice(2);
if (!base || !service || !outDir) {
  console.error("usage: console.mjs BASE_URL SERVICE OUT_DIR");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });
  page.setDefaultTimeout(30_000);

  await page.goto(base + "/");
  await page.waitForSelector("#services tbody tr");
  const services = await page.$$eval("#services tbody tr td:first-child", (tds) => tds.map((t) => t.textContent));
  if (!services.includes(service)) throw new Error(`${service} not among ${services}`);
  const graph = await page.waitForSelector("svg.graph");
  const nodes = Number(await graph.getAttribute("data-nodes"));
  const edges = Number(await graph.getAttribute("data-edges"));
  if (nodes < 3 || edges < 2) throw new Error(`dependency graph: ${nodes} nodes, ${edges} edges`);
  console.log(`services: ${services.length} (${services.join(", ")}); graph: ${nodes} nodes, ${edges} edges`);
  await page.screenshot({ path: `${outDir}/console-services.png`, fullPage: true });

  await page.click(`a[href="#/service/${encodeURIComponent(service)}"]`);
  for (const id of ["chart-rate", "chart-errors", "chart-latency"]) {
    await page.waitForSelector(`#${id}[data-points] canvas`);
    const points = Number(await page.getAttribute(`#${id}`, "data-points"));
    if (points < 10) throw new Error(`${id}: ${points} points`);
    console.log(`${id}: ${points} points`);
  }
  const ahead = Number(await page.getAttribute("#chart-rate", "data-forecast-points"));
  if (ahead < 1) throw new Error("no forecast points on the rate chart");
  console.log(`forecast points ahead: ${ahead}`);
  // The canvas holds drawn pixels, not a blank plot.
  const inked = await page.$eval("#chart-rate canvas", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  if (inked < 500) throw new Error(`rate chart draws ${inked} pixels`);
  const reasons = await page.$$eval("#replicas ul.reasons li", (li) => li.map((l) => l.textContent));
  const recommended = await page.textContent("#recommended");
  if (!reasons.length || !/^\d+$/.test(recommended)) throw new Error(`replicas: ${recommended}, reasons ${reasons}`);
  console.log(`recommended replicas: ${recommended}; ${reasons.length} reasons, first: ${reasons[0]}`);
  await page.screenshot({ path: `${outDir}/console-service.png`, fullPage: true });

  await page.click('a[href="#/anomalies"]');
  await page.waitForSelector("#anomalies tbody tr button.explain");
  const anomalies = await page.$$eval("#anomalies tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  console.log(`anomalies: ${anomalies.length}, newest ${JSON.stringify(anomalies[0].slice(0, 7))}`);
  await page.click("#anomalies tbody tr:first-child button.explain");
  await page.waitForSelector("#explanation h2");
  const explained = await page.textContent("#explanation");
  if (!/Causes, best first/.test(explained) || !/Symptoms/.test(explained)) throw new Error(`explanation: ${explained}`);
  const causes = await page.$$eval("#explanation table.causes tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  console.log(`explanation: ${causes.length} causes${causes.length ? ", first " + JSON.stringify(causes[0]) : ""}`);
  await page.screenshot({ path: `${outDir}/console-anomalies.png`, fullPage: true });

  await page.click('a[href="#/sql"]');
  await page.fill("#sql-text", "SELECT service_name, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 2 DESC");
  await page.click("#sql-run");
  await page.waitForSelector("#sql-result tbody tr");
  const rows = await page.$$eval("#sql-result tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  if (!rows.some((r) => r[0] === service && Number(r[1].replace(/,/g, "")) > 0)) throw new Error(`SQL rows: ${JSON.stringify(rows)}`);
  console.log(`sql: ${rows.length} rows, first ${JSON.stringify(rows[0])}`);
  await page.fill("#sql-text", "SELECT nope FROM spans");
  await page.click("#sql-run");
  const error = await (await page.waitForSelector("#sql-result .error")).textContent();
  if (!/nope/.test(error)) throw new Error(`a bad query shows ${error}`);
  console.log(`bad query: ${error.slice(0, 80)}`);
  await page.screenshot({ path: `${outDir}/console-sql.png`, fullPage: true });
  // A failed query logs a 400 in the browser's console; that one is expected.
  const unexpected = problems.filter((p) => !/status of 400/.test(p));
  if (unexpected.length) throw new Error(unexpected.join("\n"));
} finally {
  await browser.close();
}
