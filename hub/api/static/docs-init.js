// Starts Swagger UI on /api/docs; a file of its own so the page needs no inline script
// (the Content-Security-Policy allows scripts from this server only).
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
