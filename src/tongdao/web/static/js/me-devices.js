// Registering a device: the key pair is made here (WebCrypto X25519, device-keys.js); the
// form sends only the name and the public key; the server's configuration (no private key)
// is fetched and completed here, then offered as a file and as a QR code. The private key is
// never put into a request, a URL, storage or the page's markup: it lives in this module's
// closure until the page is left. Without this script the form posts a pasted public key.

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

function showConfig(device, config) {
  const download = document.getElementById("download-config");
  download.hidden = false;
  download.addEventListener("click", () => downloadFile(device.file_name, config));
  const figure = document.getElementById("config-qr");
  figure.insertBefore(qrSvg(config, { label: result.dataset.qrLabel }), figure.firstChild);
  figure.hidden = false;
}

function showKeyOnly(device, privateKey, reason) {
  setText("config-error", `${fill(result.dataset.configFailed, reason)} ${result.dataset.keyKept}`);
  const button = document.getElementById("download-key");
  button.hidden = false;
  const name = device.file_name.replace(/\.conf$/, ".key");
  button.addEventListener("click", () => downloadFile(name, `${privateKey}\n`));
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
  const config = await fetch(data.config, { credentials: "same-origin" });
  const text = await config.text();
  if (config.ok) {
    showConfig(data, assembleConfig(keys.privateKey, text));
  } else {
    showKeyOnly(data, keys.privateKey, text);
  }
  document.getElementById("result-title").focus();
}

if (form && result) {
  // With script the page makes the key pair: the public-key field is not asked for.
  document.getElementById("public-key-field").hidden = true;
  form.addEventListener("submit", register);
}
