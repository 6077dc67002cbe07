// Starts the vendored Swagger UI on /api/v1/docs (a file, not an inline script, so the page's
// Content-Security-Policy can forbid inline scripts). The OpenAPI URL comes from the page.
"use strict";

(function () {
  const root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") {
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
    deepLinking: true,
    // Tags start folded. Unfolded ("list", the default), this Swagger UI stopped rendering
    // after the second tag once the API passed about 130 operations (no error logged).
    docExpansion: "none",
    showExtensions: true,
    showCommonExtensions: true,
    // No online validator badge: it would send the spec's URL to validator.swagger.io.
    validatorUrl: null,
  });
})();
