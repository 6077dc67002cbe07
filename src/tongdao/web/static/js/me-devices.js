// Registering a device: the key pair is made here (WebCrypto X25519, device-keys.js); the
// form sends only the name and the public key; the server's configuration (no private key)
// is fetched and completed here, then offered as a file and as a QR code. The private key is
// never put into a request, a URL, storage or the page's markup: it lives in this module's
// closure until the page is left. Without this script the form posts a pasted public key.
//
// A company's first device: the network gateway has not set the company's tunnel up yet, and
// the configuration answers 409 marked "X-Tongdao-Config: waiting". The page then says so,
// keeps the key in memory (and asks before the page is left), and asks again every few
// seconds (growing to 15 s) for at most data-wait-seconds; then it offers the key as a file
// and a "Check again" button.

import { assembleConfig, downloadFile, generateKeyPair, qrSvg } from "./device-keys.js";

const form = document.getElementById("register-form");
const result = document.getElementById("result");

function setText(id, text) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.hidden = !text;
  return element;
}

function fill(template, reason) {
  return template.replace("%(reason)s", reason);
}

function showErrors(errors) {
  for (const input of form.querySelectorAll("input[name]")) {
    const message = document.getElementById(`f-${input.name}-error`);
    if (!message) {
      continue;
    }
    const text = errors[input.name] || "";
    message.textContent = text;
    if (text) {
      input.setAttribute("aria-invalid", "true");
    } else {
      input.removeAttribute("aria-invalid");
    }
  }
  const general = errors.form || errors.public_key || "";
  setText("register-error", general ? fill(form.dataset.failed, general) : "");
  const first = form.querySelector('[aria-invalid="true"]');
  if (first && first.type !== "hidden" && !first.closest("[hidden]")) {
    first.focus();
  }
}

const WAITING_HEADER = "X-Tongdao-Config";
const LONGEST_PAUSE_MS = 15000;

// While the key exists only here and nothing has been taken from the page: ask before leaving.
function keepPage(event) {
  event.preventDefault();
  event.returnValue = "";
}

function guardPage(on) {
  if (on) {
    window.addEventListener("beforeunload", keepPage);
  } else {
    window.removeEventListener("beforeunload", keepPage);
  }
}

function showConfig(device, config) {
  guardPage(false);
  document.getElementById("result-warning").hidden = false;
  const download = document.getElementById("download-config");
  download.hidden = false;
  download.addEventListener("click", () => downloadFile(device.file_name, config));
  const figure = document.getElementById("config-qr");
  figure.insertBefore(qrSvg(config, { label: result.dataset.qrLabel }), figure.firstChild);
  figure.hidden = false;
}

let keyOffered = false;

function offerKey(device, privateKey) {
  const button = document.getElementById("download-key");
  button.hidden = false;
  if (keyOffered) {
    return;
  }
  keyOffered = true;
  const name = device.file_name.replace(/\.conf$/, ".key");
  button.addEventListener("click", () => {
    guardPage(false);
    downloadFile(name, `${privateKey}\n`);
  });
}

function showKeyOnly(device, privateKey, reason) {
  setText("config-error", `${fill(result.dataset.configFailed, reason)} ${result.dataset.keyKept}`);
  offerKey(device, privateKey);
}

/** The server's part of the configuration: ready, waiting for the gateway, or refused. */
async function fetchConfig(url) {
  let answer;
  try {
    answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  } catch (error) {
    return { state: "unreachable", text: String(error) };
  }
  const text = await answer.text().catch(() => answer.statusText);
  if (answer.ok) {
    return { state: "ready", text };
  }
  if (answer.headers.get(WAITING_HEADER) === "waiting") {
    return { state: "waiting", text };
  }
  return { state: "refused", text };
}

function elapsedText(ms) {
  const seconds = Math.round(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, "0")}`;
}

function setWaiting(on) {
  document.getElementById("config-waiting").hidden = !on;
  document.getElementById("result-warning").hidden = on;
  document.getElementById("device-link").hidden = on;
}

/** Ask for the configuration until it is ready, refused, or the wait's bound is reached. */
function waitForConfig(device, privateKey) {
  const pause = Math.max(1, Number(result.dataset.pollSeconds) || 3) * 1000;
  const bound = Math.max(1, Number(result.dataset.waitSeconds) || 300) * 1000;
  const started = Date.now();
  const progress = document.getElementById("waiting-progress");
  let delay = pause;
  guardPage(true);
  setWaiting(true);
  document.getElementById("config-timeout").hidden = true;
  document.getElementById("check-again").hidden = true;
  progress.textContent = "";

  const tick = async () => {
    const got = await fetchConfig(device.config);
    if (got.state === "ready") {
      setWaiting(false);
      setText("waiting-progress", "");
      showConfig(device, assembleConfig(privateKey, got.text));
      const ready = document.getElementById("config-ready");
      ready.textContent = result.dataset.ready;
      ready.hidden = false;
      return;
    }
    if (got.state === "refused") {
      setWaiting(false);
      showKeyOnly(device, privateKey, got.text);
      return;
    }
    const waited = Date.now() - started;
    if (waited >= bound) {
      setWaiting(false);
      document.getElementById("result-warning").hidden = true;
      document.getElementById("device-link").hidden = false;
      document.getElementById("config-timeout").hidden = false;
      document.getElementById("check-again").hidden = false;
      offerKey(device, privateKey);
      document.getElementById("timeout-text").focus();
      return;
    }
    progress.textContent = result.dataset.waited.replace("%(elapsed)s", elapsedText(waited));
    delay = Math.min(Math.round(delay * 1.5), LONGEST_PAUSE_MS);
    // The last check falls on the bound itself.
    setTimeout(tick, Math.max(250, Math.min(delay, bound - waited)));
  };
  setTimeout(tick, delay);
}

async function register(event) {
  event.preventDefault();
  const button = document.getElementById("register-button");
  const progress = document.getElementById("register-progress");
  const name = form.elements.name.value.trim();
  if (!name) {
    showErrors({ name: form.elements.name.validationMessage || "required" });
    return;
  }
  button.disabled = true;
  let keys;
  try {
    progress.textContent = form.dataset.generating;
    keys = await generateKeyPair();
  } catch (error) {
    button.disabled = false;
    progress.textContent = "";
    document.getElementById("public-key-field").hidden = false;
    setText("register-error", form.dataset.noCrypto);
    return;
  }
  progress.textContent = form.dataset.registering;
  form.elements.public_key.value = keys.publicKey;
  const body = new URLSearchParams({
    csrf_token: form.elements.csrf_token.value,
    name,
    public_key: keys.publicKey,
  });
  let answer;
  try {
    answer = await fetch(form.action, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRF-Token": form.elements.csrf_token.value },
      body,
      credentials: "same-origin",
    });
  } catch (error) {
    button.disabled = false;
    progress.textContent = "";
    showErrors({ form: String(error) });
    return;
  }
  progress.textContent = "";
  const data = await answer.json().catch(() => ({ errors: { form: answer.statusText } }));
  if (!answer.ok) {
    button.disabled = false;
    showErrors(data.errors || { form: answer.statusText });
    return;
  }
  showErrors({});
  form.closest("section").hidden = true;
  result.hidden = false;
  document.getElementById("device-link").href = data.page;
  const got = await fetchConfig(data.config);
  if (got.state === "ready") {
    showConfig(data, assembleConfig(keys.privateKey, got.text));
  } else if (got.state === "waiting") {
    waitForConfig(data, keys.privateKey);
    document.getElementById("check-again").addEventListener("click", () => {
      waitForConfig(data, keys.privateKey);
    });
  } else {
    showKeyOnly(data, keys.privateKey, got.text);
  }
  document.getElementById("result-title").focus();
}

if (form && result) {
  // With script the page makes the key pair: the public-key field is not asked for.
  document.getElementById("public-key-field").hidden = true;
  form.addEventListener("submit", register);
}
