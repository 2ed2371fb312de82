// The signup page: form → (email code) → live progress → open the new site logged in.
import "./style.css";
import { Code, gateway, loadConfig, refusal, type Gateway, type Refusal } from "./client";
import type { SignupResponse } from "./gen/tenantry/v1/signup_pb";

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;
const signupForm = $<HTMLFormElement>("#signup");
const verifyForm = $<HTMLFormElement>("#verify");
const progressSection = $<HTMLElement>("#progress");
const doneSection = $<HTMLElement>("#done");
const subdomainStatus = $<HTMLElement>("#subdomain-status");

/** The fields the gateway names in BadRequest, as the form's inputs are named. */
const FIELDS = ["email", "password", "full_name", "organisation", "subdomain", "plan", "code"];

function input(form: HTMLFormElement, name: string): HTMLInputElement {
  return form.elements.namedItem(name) as HTMLInputElement;
}

function clearErrors(form: HTMLFormElement, formError: HTMLElement) {
  form.querySelectorAll<HTMLElement>(".field-error").forEach((p) => (p.textContent = ""));
  form.querySelectorAll("input").forEach((i) => i.removeAttribute("aria-invalid"));
  formError.textContent = "";
}

/** Shows a refusal where it belongs: next to each field it names, else above the button. */
function showRefusal(form: HTMLFormElement, formError: HTMLElement, r: Refusal) {
  let placed = false;
  for (const v of r.fields) {
    const slot = form.querySelector<HTMLElement>(`.field-error[data-for="${v.field}"]`);
    if (slot && FIELDS.includes(v.field)) {
      slot.textContent = v.description;
      slot.dataset.reason = v.reason;
      const field = form.elements.namedItem(v.field);
      if (field instanceof HTMLInputElement) field.setAttribute("aria-invalid", "true");
      placed = true;
    }
  }
  if (r.reason === "SUBDOMAIN_TAKEN" && r.metadata.suggestion) {
    offerSuggestion(r.metadata.suggestion, "That address is taken.");
  }
  if (!placed) formError.textContent = friendly(r);
}

function friendly(r: Refusal): string {
  switch (r.code) {
    case Code.Unavailable:
      return "We could not reach the signup service. Please try again in a moment.";
    case Code.ResourceExhausted:
      return r.message.charAt(0).toUpperCase() + r.message.slice(1) + ".";
    case Code.Internal:
    case Code.Unknown:
      return "Something went wrong on our side. Please try again.";
    default:
      return r.message.charAt(0).toUpperCase() + r.message.slice(1);
  }
}

function offerSuggestion(suggestion: string, why: string) {
  subdomainStatus.className = "taken";
  subdomainStatus.textContent = `${why} `;
  const use = document.createElement("button");
  use.type = "button";
  use.className = "suggestion";
  use.id = "use-suggestion";
  use.textContent = `Use ${suggestion}`;
  use.addEventListener("click", () => {
    input(signupForm, "subdomain").value = suggestion;
    void checkSubdomain();
  });
  subdomainStatus.append(use);
}

let client: Gateway;
let domain = "erp.localhost";
let checkSeq = 0;

async function checkSubdomain() {
  const subdomain = input(signupForm, "subdomain").value.trim();
  const organisation = input(signupForm, "organisation").value.trim();
  const seq = ++checkSeq;
  if (!subdomain && !organisation) {
    subdomainStatus.textContent = "";
    return;
  }
  try {
    const r = await client.checkSubdomain({ subdomain, organisation });
    if (seq !== checkSeq) return; // a newer check is on its way
    subdomainStatus.className = "";
    if (!subdomain && r.suggestion) {
      offerSuggestion(r.suggestion, "Suggested:");
    } else if (!r.valid) {
      subdomainStatus.className = "taken";
      subdomainStatus.textContent = r.reason;
      if (r.suggestion) offerSuggestion(r.suggestion, r.reason);
    } else if (!r.available) {
      offerSuggestion(r.suggestion, `${subdomain}.${domain} is taken.`);
    } else {
      subdomainStatus.textContent = `✓ ${subdomain}.${domain} is free`;
    }
  } catch (e) {
    if (seq === checkSeq) subdomainStatus.textContent = "";
    console.warn("CheckSubdomain failed", refusal(e));
  }
}

function debounce(f: () => void, ms: number): () => void {
  let t: ReturnType<typeof setTimeout> | undefined;
  return () => {
    clearTimeout(t);
    t = setTimeout(f, ms);
  };
}

async function loadPlans() {
  const fieldset = $<HTMLFieldSetElement>("#plans");
  try {
    const { plans } = await client.listPlans({});
    plans.forEach((p, i) => {
      const label = document.createElement("label");
      label.className = "plan";
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "plan";
      radio.value = p.id;
      radio.checked = i === 0;
      const price =
        p.priceMinor > 0n
          ? ` — ${(Number(p.priceMinor) / 100).toFixed(2)} ${p.currency}/${p.interval}`
          : "";
      const trial = p.trialDays > 0 ? ` (${p.trialDays}-day trial)` : "";
      label.append(radio, `${p.name || p.id}${price}${trial}`);
      fieldset.append(label);
    });
  } catch (e) {
    $<HTMLElement>("#form-error").textContent = friendly(refusal(e));
  }
}

/** One signup attempt, retried with the same idempotency key while the gateway is away. */
async function submitSignup(event: SubmitEvent) {
  event.preventDefault();
  const formError = $<HTMLElement>("#form-error");
  clearErrors(signupForm, formError);
  const button = signupForm.querySelector("button[type=submit]") as HTMLButtonElement;
  button.disabled = true;
  const plan = (signupForm.querySelector("input[name=plan]:checked") as HTMLInputElement | null)?.value ?? "";
  const request = {
    email: input(signupForm, "email").value,
    password: input(signupForm, "password").value,
    fullName: input(signupForm, "full_name").value,
    organisation: input(signupForm, "organisation").value,
    subdomain: input(signupForm, "subdomain").value.trim(),
    plan,
    idempotencyKey: crypto.randomUUID(),
  };
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await client.signup(request);
        // The password has done its job here; nothing keeps it.
        input(signupForm, "password").value = "";
        accepted(answer);
        return;
      } catch (e) {
        const r = refusal(e);
        if (r.code === Code.Unavailable && attempt < 3) {
          await new Promise((res) => setTimeout(res, 1000 * (attempt + 1)));
          continue;
        }
        showRefusal(signupForm, formError, r);
        return;
      }
    }
  } finally {
    button.disabled = false;
  }
}

let pending: SignupResponse | undefined;

function accepted(answer: SignupResponse) {
  signupForm.hidden = true;
  if (answer.verificationRequired) {
    pending = answer;
    $<HTMLElement>("#sent-to").textContent = answer.verificationSentTo;
    verifyForm.hidden = false;
    input(verifyForm, "code").focus();
    return;
  }
  verifyForm.hidden = true;
  void watch(answer);
}

async function submitCode(event: SubmitEvent) {
  event.preventDefault();
  const formError = $<HTMLElement>("#verify-error");
  clearErrors(verifyForm, formError);
  if (!pending) return;
  try {
    const answer = await client.verifyEmail({
      verificationId: pending.verificationId,
      code: input(verifyForm, "code").value.trim(),
    });
    accepted(answer);
  } catch (e) {
    const r = refusal(e);
    if (r.reason === "CODE_MISMATCH") {
      const left = r.metadata.attempts_left;
      r.fields = [{ field: "code", description: `That code is not right${left ? ` (${left} tries left)` : ""}.`, reason: r.reason }];
    }
    showRefusal(verifyForm, formError, r);
  }
}

async function watch(answer: SignupResponse) {
  progressSection.hidden = false;
  const bar = $<HTMLProgressElement>("#progress-bar");
  const label = $<HTMLElement>("#progress-label");
  const percent = $<HTMLElement>("#progress-percent");
  const steps = $<HTMLOListElement>("#steps");
  const seen = new Set<string>();
  let url = "";
  try {
    for await (const p of client.watchSignup({ tenantId: answer.tenantId })) {
      label.textContent = p.label;
      bar.value = p.percent;
      percent.textContent = String(p.percent);
      if (!seen.has(p.step)) {
        seen.add(p.step);
        steps.querySelectorAll("li").forEach((li) => li.classList.remove("current"));
        const li = document.createElement("li");
        li.textContent = p.label;
        li.className = "current";
        li.dataset.step = p.step;
        steps.append(li);
      }
      // The first URL is the site's; a later one (single sign-on ready) is its login page.
      if (p.url && !url) url = p.url;
      if (p.failed) {
        $<HTMLElement>("#progress-error").textContent = p.reason;
        return;
      }
      if (p.done) break;
    }
  } catch (e) {
    $<HTMLElement>("#progress-error").textContent = friendly(refusal(e));
    return;
  }
  finished(answer, url);
}

function finished(answer: SignupResponse, url: string) {
  doneSection.hidden = false;
  const link = $<HTMLAnchorElement>("#site-link");
  link.href = url;
  link.textContent = url;
  const open = $<HTMLButtonElement>("#open-site");
  open.addEventListener("click", async () => {
    open.disabled = true;
    try {
      const { url: loggedIn } = await client.openSite({
        tenantId: answer.tenantId,
        handoffToken: answer.handoffToken,
      });
      window.location.assign(loggedIn);
    } catch (e) {
      // No logged-in link (the token is spent, the bench is busy): the login page still works.
      $<HTMLElement>("#open-error").textContent = `${friendly(refusal(e))} Taking you to the login page…`;
      setTimeout(() => window.location.assign(`${url}/login`), 1500);
    }
  });
}

async function main() {
  const config = await loadConfig();
  domain = config.domain;
  $<HTMLElement>("#domain-suffix").textContent = `.${domain}`;
  client = gateway(config.gateway);
  const recheck = debounce(() => void checkSubdomain(), 300);
  input(signupForm, "subdomain").addEventListener("input", recheck);
  input(signupForm, "organisation").addEventListener("input", () => {
    if (!input(signupForm, "subdomain").value) recheck();
  });
  signupForm.addEventListener("submit", (e) => void submitSignup(e));
  verifyForm.addEventListener("submit", (e) => void submitCode(e));
  await loadPlans();
  document.body.dataset.ready = "true";
}

void main();
