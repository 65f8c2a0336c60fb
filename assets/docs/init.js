// Renders /openapi.json with the vendored Swagger UI. A separate file, not
// an inline script, so that the page's Content-Security-Policy can forbid
// inline scripts (script-src 'self').
"use strict";

window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Nothing from the internet: no badge from validator.swagger.io.
    validatorUrl: null,
    // "Try it out" sends requests to this server only (connect-src 'self').
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});
