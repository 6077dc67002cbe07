// Security keys and passkeys (WebAuthn) for the account page and the sign-in's key step.
// Our own module, no library: the server (py_webauthn) makes the options and checks the
// answers; this file only hands the options to navigator.credentials and puts the answer,
// as JSON with base64url fields, into the form's hidden "credential" field, then submits the
// form as a plain post. The sign-in step's options come in the form's data-options attribute
// (data, not script: the console's CSP allows no inline script); a registration asks for
// its options when the person submits (they are bound to the session and short-lived).

const b64urlToBytes = (text) => {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "===".slice((b64.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
};

const bytesToB64url = (buffer) => {
  let text = "";
  for (const byte of new Uint8Array(buffer)) {
    text += String.fromCharCode(byte);
  }
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};

const descriptors = (list) =>
  (list || []).map((item) => ({ ...item, id: b64urlToBytes(item.id) }));

function creationOptions(json) {
  if (PublicKeyCredential.parseCreationOptionsFromJSON) {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    user: { ...json.user, id: b64urlToBytes(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

function requestOptions(json) {
  if (PublicKeyCredential.parseRequestOptionsFromJSON) {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  };
}

function answer(credential) {
  if (typeof credential.toJSON === "function") {
    return credential.toJSON();
  }
  const r = credential.response;
  const response = { clientDataJSON: bytesToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bytesToB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = bytesToB64url(r.authenticatorData);
    response.signature = bytesToB64url(r.signature);
    if (r.userHandle) {
      response.userHandle = bytesToB64url(r.userHandle);
    }
  }
  return {
    id: credential.id,
    rawId: bytesToB64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment,
  };
}

function say(form, text) {
  const box = form.querySelector("[data-webauthn-status]");
  if (box) {
    box.textContent = text;
    box.hidden = !text;
  }
}

async function optionsFor(form) {
  if (form.dataset.options) {
    return JSON.parse(form.dataset.options);
  }
  const body = new URLSearchParams({ csrf_token: form.elements.csrf_token.value });
  const reply = await fetch(form.dataset.optionsUrl, {
    method: "POST",
    body,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  const data = await reply.json();
  if (!reply.ok) {
    throw new Error(data.error || reply.statusText);
  }
  return data;
}

async function ceremony(form) {
  const kind = form.dataset.webauthn; // "register" or "sign-in"
  say(form, form.dataset.waiting || "");
  try {
    const json = await optionsFor(form);
    const credential =
      kind === "register"
        ? await navigator.credentials.create({ publicKey: creationOptions(json) })
        : await navigator.credentials.get({ publicKey: requestOptions(json) });
    form.elements.credential.value = JSON.stringify(answer(credential));
    form.submit();
  } catch (error) {
    const cancelled = error && (error.name === "NotAllowedError" || error.name === "AbortError");
    say(form, cancelled ? form.dataset.cancelled || "" : `${form.dataset.failed || ""} ${error.message || error}`);
  }
}

for (const form of document.querySelectorAll("form[data-webauthn]")) {
  if (!window.PublicKeyCredential) {
    say(form, form.dataset.unsupported || "");
    const button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = true;
    }
    continue;
  }
  form.addEventListener("submit", (event) => {
    if (form.elements.credential.value) {
      return; // the answer is in: let the post go
    }
    event.preventDefault();
    if (form.reportValidity()) {
      ceremony(form);
    }
  });
}
