// Swagger UI on the service's own OpenAPI document. validatorUrl: null keeps Swagger UI from
// sending the document to validator.swagger.io (a third-party host).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    onComplete: function () {
      // Swagger UI renders the servers' <select> without a label (axe: select-name).
      var servers = document.getElementById("servers");
      if (servers) servers.setAttribute("aria-label", "Server");
    },
  });
});
