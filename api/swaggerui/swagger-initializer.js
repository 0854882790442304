// tokend: render the OpenAPI document served next to this page (/openapi.yaml).
// Kept out of index.html so the page needs no inline script (see the
// Content-Security-Policy set by the server).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    displayRequestDuration: true,
    // No call to validator.swagger.io: tokend's docs work offline and do not
    // tell a third party where they are.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
