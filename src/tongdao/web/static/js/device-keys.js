// A device's WireGuard keys, made and kept in the browser (an ES module, no inline script).
//
// The employee's page generates the X25519 key pair here with WebCrypto, sends only the public
// key to the API, and writes the private key into the config that the server returns for the
// device (GET /api/v1/tenants/{t}/devices/{d}/wireguard.conf, rendered by
// tongdao.network.wgconfig.render with the line "# PrivateKey = <this device's private key>"
// under [Interface]). The private key is never sent anywhere: this module makes no request.
//
// WebCrypto exists only in a secure context (https, or http on loopback).

import qrcode from "../vendor/qrcode-generator/qrcode.mjs";

const KEY_BYTES = 32;
// Standard base64 of 32 bytes: 43 characters, the last holding 2 significant bits, then "=".
const KEY_PATTERN = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const PRIVATE_KEY_LINE = /^\s*privatekey\s*=/i;
const PLACEHOLDER_LINE = /^\s*#\s*PrivateKey\s*=/i;
const SECTION_LINE = /^\s*\[([^\]]*)\]\s*$/;
const SVG_NS = "http://www.w3.org/2000/svg";

function toBase64(bytes) {
  let binary = "";
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary);
}

function fromBase64url(text) {
  const padded = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(padded + "=".repeat((4 - (padded.length % 4)) % 4));
  return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
}

/** True for a WireGuard key: standard base64 of exactly 32 bytes. */
export function isKey(text) {
  return typeof text === "string" && KEY_PATTERN.test(text);
}

/**
 * A fresh X25519 key pair as WireGuard writes keys (standard base64 of the raw 32 bytes).
 * The private key is clamped as `wg genkey` clamps it; X25519 clamps on use anyway, so the
 * public key is the same either way.
 * @returns {Promise<{privateKey: string, publicKey: string}>}
 */
export async function generateKeyPair() {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    throw new Error("WebCrypto is not available: open the console over https");
  }
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const publicRaw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  // JWK "d" is base64url of the raw private scalar (RFC 8037).
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const privateRaw = fromBase64url(jwk.d);
  if (publicRaw.length !== KEY_BYTES || privateRaw.length !== KEY_BYTES) {
    throw new Error("WebCrypto returned an X25519 key of the wrong length");
  }
  privateRaw[0] &= 248;
  privateRaw[31] = (privateRaw[31] & 127) | 64;
  const keys = { privateKey: toBase64(privateRaw), publicKey: toBase64(publicRaw) };
  privateRaw.fill(0);
  return keys;
}

/**
 * The server's config for this device with `PrivateKey = <key>` in its [Interface] section:
 * in place of the server's "# PrivateKey = ..." placeholder line when there is one, else as
 * the section's first line. Refuses a malformed key, a config without exactly one [Interface]
 * section, and a config that already sets a PrivateKey.
 * @param {string} privateKey standard base64 of 32 bytes
 * @param {string} serverConfigText the wireguard.conf text the API returned
 * @returns {string}
 */
export function assembleConfig(privateKey, serverConfigText) {
  if (!isKey(privateKey)) {
    throw new Error("the private key is not a WireGuard key (base64 of 32 bytes)");
  }
  if (typeof serverConfigText !== "string") {
    throw new Error("the server's config is not text");
  }
  const lines = serverConfigText.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") {
    lines.pop();
  }
  let interfaceAt = -1;
  let interfaces = 0;
  let placeholderAt = -1;
  let section = "";
  lines.forEach((line, index) => {
    const header = SECTION_LINE.exec(line);
    if (header) {
      section = header[1].trim().toLowerCase();
      if (section === "interface") {
        interfaces += 1;
        interfaceAt = index;
      }
      return;
    }
    if (PRIVATE_KEY_LINE.test(line)) {
      throw new Error("the config already has a PrivateKey");
    }
    if (section === "interface" && placeholderAt < 0 && PLACEHOLDER_LINE.test(line)) {
      placeholderAt = index;
    }
  });
  if (interfaces !== 1) {
    throw new Error("the config must have exactly one [Interface] section");
  }
  const keyLine = `PrivateKey = ${privateKey}`;
  if (placeholderAt >= 0) {
    lines[placeholderAt] = keyLine;
  } else {
    lines.splice(interfaceAt + 1, 0, keyLine);
  }
  return lines.join("\n") + "\n";
}

/**
 * An <svg> QR code of the text (UTF-8, byte mode, error correction L as `qrencode` uses for
 * WireGuard configs), built with DOM calls: no markup is parsed.
 * @param {string} text
 * @param {{cellSize?: number, margin?: number, label?: string}} [options]
 * @returns {SVGSVGElement}
 */
export function qrSvg(text, options = {}) {
  const cellSize = options.cellSize ?? 4;
  const margin = options.margin ?? 4; // the quiet zone, in modules
  const label = options.label ?? "QR code of the WireGuard configuration";
  // qrcode-generator's byte mode takes one byte per UTF-16 code unit (charCode & 0xff): give
  // it the UTF-8 bytes as such code units so that non-ASCII text (Chinese names) survives.
  let bytes = "";
  for (const byte of new TextEncoder().encode(text)) {
    bytes += String.fromCharCode(byte);
  }
  const code = qrcode(0, "L");
  code.addData(bytes, "Byte");
  code.make();
  const modules = code.getModuleCount();
  const size = modules + 2 * margin;

  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("xmlns", SVG_NS);
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("width", String(size * cellSize));
  svg.setAttribute("height", String(size * cellSize));
  svg.setAttribute("shape-rendering", "crispEdges");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const background = document.createElementNS(SVG_NS, "rect");
  background.setAttribute("width", String(size));
  background.setAttribute("height", String(size));
  background.setAttribute("fill", "#ffffff");
  svg.appendChild(background);
  const path = [];
  for (let row = 0; row < modules; row += 1) {
    for (let col = 0; col < modules; col += 1) {
      if (code.isDark(row, col)) {
        path.push(`M${col + margin},${row + margin}h1v1h-1z`);
      }
    }
  }
  const dark = document.createElementNS(SVG_NS, "path");
  dark.setAttribute("d", path.join(""));
  dark.setAttribute("fill", "#000000");
  svg.appendChild(dark);
  return svg;
}

/**
 * Offer the text as a file download (a blob: URL, revoked once the download has started).
 * @param {string} name
 * @param {string} text
 */
export function downloadFile(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
