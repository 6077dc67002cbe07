// The account page: draws the authenticator app's otpauth:// address as a QR code (the same
// vendored QR library as the device configuration). The key is also shown as text, so the
// set-up works without this script.

import { qrSvg } from "./device-keys.js";

const figure = document.getElementById("totp-qr");
if (figure && figure.dataset.otpauth) {
  const svg = qrSvg(figure.dataset.otpauth, { cellSize: 5, label: figure.dataset.label });
  figure.insertBefore(svg, figure.firstChild);
  const caption = figure.querySelector("figcaption");
  if (caption) {
    caption.hidden = true;
  }
}
