// The signup page in a real browser (Debian's Chromium, driven by playwright-core) against a
// real `tenantry dev` (every service, frappe-sim, the dev SMTP sink), on free ports with its
// own NATS namespace and database:
//
//   1. a first owner signs up as "acme" through the page (so the name is taken);
//   2. a second visitor submits bad values → each field shows its own error;
//   3. picks "acme" → the page offers the gateway's suggestion, which they take;
//   4. signs up → the code is read from the SMTP sink → verified → progress reaches 100 %;
//   5. "Open my site" → the site's desk opens with the owner logged in.
//
// A screenshot of each stage goes to `e2e/out/` (or the directory given as the first argument).
// Exit code 0 only when every check held. Run by `just browser-test` (part of `just test`).

import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, createWriteStream } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const shots = resolve(process.argv[2] ?? join(here, "out"));
const tenantry = process.env.TENANTRY_BIN ?? join(root, "target/debug/tenantry");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  console.log(`  ok  ${message}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- the stack -----------------------------------------------------------------------------
const work = mkdtempSync(join(tmpdir(), "tenantry-browser-"));
const suffix = Math.random().toString(16).slice(2, 10);
const ports = {};
for (const k of ["web", "signup", "operator", "directory", "vault", "billing", "admin", "frappe", "authentik"]) {
  ports[k] = await freePort();
}
const database = `tenantry_browser_${suffix}`;
const env = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !k.startsWith("TENANTRY_") && !k.startsWith("OTEL_")),
);
Object.assign(env, {
  NATS_URL: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
  DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
  TENANTRY_NAMESPACE: `browser${suffix}`,
  TENANTRY_DEV_DIR: join(work, "dev"),
  TENANTRY_DEV_NO_TLS: "true",
  TENANTRY_DEV_STANDBY: "0",
  TENANTRY_WEB_ADDR: `127.0.0.1:${ports.web}`,
  TENANTRY_SIGNUP_ADDR: `127.0.0.1:${ports.signup}`,
  TENANTRY_SIGNUP_OPERATOR_ADDR: `127.0.0.1:${ports.operator}`,
  TENANTRY_DIRECTORY_ADDR: `127.0.0.1:${ports.directory}`,
  TENANTRY_VAULT_ADDR: `127.0.0.1:${ports.vault}`,
  TENANTRY_BILLING_LISTEN: `127.0.0.1:${ports.billing}`,
  TENANTRY_ADMIN_ADDR: `127.0.0.1:${ports.admin}`,
  TENANTRY_DEV_FRAPPE_PORT: String(ports.frappe),
  TENANTRY_DEV_AUTHENTIK_PORT: String(ports.authentik),
  RUST_LOG: "info",
});
const logFile = join(work, "dev.log");
const log = createWriteStream(logFile);
const dev = spawn(tenantry, ["dev"], { env, stdio: ["ignore", "pipe", "pipe"] });
dev.stdout.pipe(log);
dev.stderr.pipe(log);

let browser;
async function cleanUp() {
  await browser?.close().catch(() => {});
  if (dev.exitCode === null) {
    dev.kill("SIGTERM");
    await Promise.race([new Promise((r) => dev.once("exit", r)), sleep(10_000)]);
    if (dev.exitCode === null) dev.kill("SIGKILL");
  }
  spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-c", `DROP DATABASE IF EXISTS ${database}`], {
    stdio: "ignore",
  });
}

function tail() {
  try {
    return readFileSync(logFile, "utf8").split("\n").slice(-40).join("\n");
  } catch {
    return "";
  }
}

/** The newest code the dev SMTP sink kept for `email`. */
async function mailedCode(email) {
  const dir = join(work, "dev", "mail");
  for (let i = 0; i < 100; i++) {
    let files = [];
    try {
      files = readdirSync(dir).sort().reverse();
    } catch {}
    for (const f of files) {
      const text = readFileSync(join(dir, f), "utf8");
      const code = text.match(/verification code is (\d{6})/);
      if (text.includes(email) && code) return code[1];
    }
    await sleep(100);
  }
  throw new Error(`no verification mail for ${email}`);
}

async function signUp(page, who, { shoot = false } = {}) {
  await page.fill("input[name=email]", who.email);
  await page.fill("input[name=full_name]", who.name);
  await page.fill("input[name=password]", who.password);
  await page.fill("input[name=organisation]", who.organisation);
  if (who.subdomain !== undefined) await page.fill("input[name=subdomain]", who.subdomain);
  await page.click("#signup button[type=submit]");
  await page.waitForSelector("#verify:not([hidden])");
  check((await page.textContent("#sent-to")).endsWith(who.email.split("@")[1]), "the page says where the code went");
  const code = await mailedCode(who.email);
  await page.fill("input[name=code]", code);
  if (shoot) await page.screenshot({ path: join(shots, "3-verify.png") });
  await page.click("#verify button[type=submit]");
  await page.waitForSelector("#done:not([hidden])", { timeout: 120_000 });
  check((await page.textContent("#progress-percent")) === "100", "progress reaches 100 %");
  const percents = await page.$$eval("#steps li", (lis) => lis.map((li) => li.dataset.step));
  check(percents.length >= 3, `the steps were shown as they happened (${percents.join(", ")})`);
  if (shoot) await page.screenshot({ path: join(shots, "4-progress.png") });
}

let failed = false;
try {
  // Ready: every service's dependencies and consumers are up.
  let ready = false;
  for (let i = 0; i < 600 && !ready; i++) {
    if (dev.exitCode !== null) throw new Error(`tenantry dev exited (${dev.exitCode})`);
    ready = await fetch(`http://127.0.0.1:${ports.admin}/readyz`).then((r) => r.ok, () => false);
    if (!ready) await sleep(200);
  }
  check(ready, "tenantry dev is ready");

  browser = await chromium.launch({
    executablePath: browserPath,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const pageUrl = `http://localhost:${ports.web}/`;

  // 1. The first owner takes "acme".
  const first = await (await browser.newContext()).newPage();
  await first.goto(pageUrl);
  await first.waitForSelector("body[data-ready=true]");
  await signUp(first, {
    email: "ada@example.com",
    name: "Ada Lovelace",
    password: "Analytical-Engine-1843!",
    organisation: "Acme",
    subdomain: "acme",
  });

  // 2. A second visitor: bad values first.
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && console.log(`  browser: ${m.text()}`));
  await page.goto(pageUrl);
  await page.waitForSelector("body[data-ready=true]");
  const plans = await page.$$eval("input[name=plan]", (r) => r.map((i) => i.value));
  check(plans.length >= 2, `the plans come from ListPlans (${plans.join(", ")})`);
  await page.fill("input[name=email]", "not-an-email");
  await page.fill("input[name=full_name]", "\u200b");
  await page.fill("input[name=password]", "short");
  await page.fill("input[name=organisation]", "Widgets");
  await page.click("#signup button[type=submit]");
  await page.waitForSelector('.field-error[data-for="email"]:not(:empty)');
  for (const field of ["email", "password", "full_name"]) {
    const text = await page.textContent(`.field-error[data-for="${field}"]`);
    check(text.trim().length > 0, `the ${field} field shows its error: "${text.trim()}"`);
  }
  check(
    (await page.getAttribute("input[name=email]", "aria-invalid")) === "true",
    "the email input is marked invalid",
  );
  await page.screenshot({ path: join(shots, "1-field-errors.png") });

  // 3. A taken subdomain: the suggestion is offered, and taken.
  await page.fill("input[name=subdomain]", "acme");
  const offer = await page.waitForSelector("#use-suggestion");
  const suggestion = (await offer.textContent()).replace(/^Use /, "");
  check(suggestion && suggestion !== "acme", `a free alternative is offered (${suggestion})`);
  await page.screenshot({ path: join(shots, "2-subdomain-taken.png") });
  await offer.click();
  check((await page.inputValue("input[name=subdomain]")) === suggestion, "the suggestion fills the field");
  await page.waitForFunction(() => document.querySelector("#subdomain-status")?.textContent?.includes("is free"));

  // 4. Sign up, confirm the code, watch it being built.
  await signUp(
    page,
    {
      email: "grace@example.com",
      name: "Grace Hopper",
      password: "Cobol-Compiler-1959!",
      organisation: "Widgets",
    },
    { shoot: true },
  );
  const siteUrl = await page.getAttribute("#site-link", "href");
  check(siteUrl.includes(`${suggestion}.`), `the site is at the chosen address (${siteUrl})`);

  // 5. Open the site, logged in.
  await Promise.all([page.waitForURL(/\/app$/, { timeout: 30_000 }), page.click("#open-site")]);
  const user = await page.textContent("#user");
  check(user === "grace@example.com", `the site opens with the owner logged in (${user})`);
  check(new URL(page.url()).hostname === new URL(siteUrl).hostname, "on the new site's own host");
  await page.screenshot({ path: join(shots, "5-site-logged-in.png") });
  console.log(`browser test passed; screenshots in ${shots}`);
} catch (e) {
  failed = true;
  console.error(`browser test FAILED: ${e?.stack ?? e}\n--- tenantry dev log (tail) ---\n${tail()}`);
} finally {
  await cleanUp();
  if (!failed) rmSync(work, { recursive: true, force: true });
  else console.error(`logs kept in ${work}`);
}
process.exit(failed ? 1 : 0);
