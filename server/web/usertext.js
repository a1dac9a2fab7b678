// Text a user or dispatcher typed, put on the page: as text (never HTML), and bidi-isolated, so an
// override character in a name (U+202E) cannot reverse the status or precinct written after it.
"use strict";

function userText(value) {
  const element = document.createElement("bdi");
  element.textContent = value == null ? "" : String(value);
  return element;
}
