// "Try it": send the body to TF Serving's :predict and show the answer, its latency and the
// runtime that answered. An uploaded image is resized in the browser to the input's size and
// becomes the body. Only reads: prediction changes nothing.
(function () {
  "use strict";
  var form = document.getElementById("try-form");
  if (!form) { return; }
  var body = document.getElementById("try-body");
  var result = document.getElementById("try-result");

  function show(parts) {
    result.textContent = "";
    parts.forEach(function (part) {
      var element = document.createElement(part.tag);
      element.textContent = part.text;
      if (part.className) { element.className = part.className; }
      result.appendChild(element);
    });
  }

  var image = document.getElementById("try-image");
  if (image) {
    image.addEventListener("change", function () {
      var file = image.files && image.files[0];
      if (!file) { return; }
      var width = Number(form.dataset.width), height = Number(form.dataset.height);
      var picture = new Image();
      picture.onload = function () {
        var canvas = document.createElement("canvas");
        canvas.width = width; canvas.height = height;
        var drawing = canvas.getContext("2d");
        drawing.drawImage(picture, 0, 0, width, height);
        var pixels = drawing.getImageData(0, 0, width, height).data;
        var rows = [];
        for (var y = 0; y < height; y++) {
          var row = [];
          for (var x = 0; x < width; x++) {
            var i = (y * width + x) * 4;
            row.push([pixels[i] / 255, pixels[i + 1] / 255, pixels[i + 2] / 255]);
          }
          rows.push(row);
        }
        var inputs = {};
        inputs[form.dataset.imageInput] = [rows];
        body.value = JSON.stringify({ inputs: inputs });
        URL.revokeObjectURL(picture.src);
      };
      picture.src = URL.createObjectURL(file);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var headers = { "Content-Type": "application/json" };
    if (form.dataset.csrf) { headers["X-CSRF-Token"] = form.dataset.csrf; }
    var started = performance.now();
    show([{ tag: "p", text: "Running…", className: "hint" }]);
    fetch(form.dataset.url, { method: "POST", headers: headers, body: body.value,
                              credentials: "same-origin" })
      .then(function (response) {
        return response.text().then(function (text) {
          var took = (performance.now() - started).toFixed(1);
          var runtime = response.headers.get("Modelhub-Runtime") || "unknown";
          var pretty = text;
          try { pretty = JSON.stringify(JSON.parse(text), null, 1); } catch (e) { /* as sent */ }
          show([
            { tag: "p", text: "HTTP " + response.status + " in " + took + " ms, answered by "
                              + runtime, className: response.ok ? "" : "error" },
            { tag: "pre", text: pretty }
          ]);
          result.dataset.status = String(response.status);
          result.dataset.runtime = runtime;
        });
      })
      .catch(function (error) {
        show([{ tag: "p", text: "The request failed: " + error, className: "error" }]);
      });
  });
}());
