// dogbreed's page: upload + classify, correct a label, classify or delete one photo. Plain JavaScript, no build
// step. Text from the server is always set with textContent, never parsed as HTML.
"use strict";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function pct(p) {
  return p === null || p === undefined ? "" : (p * 100).toFixed(1) + "%";
}

async function detail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

function resultCard(item) {
  const li = el("li", "card result");
  if (item.id !== null) li.dataset.imageId = item.id;
  if (item.id !== null) {
    const link = el("a");
    link.href = "/images/" + item.id;
    const img = el("img");
    img.src = "/api/images/" + item.id + "/thumbnail";
    img.alt = item.filename;
    img.width = 256;
    img.height = 192;
    link.appendChild(img);
    li.appendChild(link);
  }
  const caption = el("div", "caption");
  const name = el(item.id !== null ? "a" : "span", "name", (item.id !== null ? "#" + item.id + " " : "") + item.filename);
  if (item.id !== null) name.href = "/images/" + item.id;
  caption.appendChild(name);
  if (item.upload === "refused") {
    caption.appendChild(el("span", "error", "refused: " + item.reason));
  } else if (item.breed) {
    caption.appendChild(el("span", "breed", item.breed));
    caption.appendChild(document.createTextNode(" "));
    caption.appendChild(el("span", "p", pct(item.probability)));
    if (item.not_a_dog) caption.appendChild(el("span", "notdog", "NOT A DOG?"));
  } else if (item.error) {
    caption.appendChild(el("span", "error", "failed: " + item.error));
  } else {
    caption.appendChild(el("span", "pending", "still predicting (task " + item.task_id + ")"));
  }
  if (item.upload === "duplicate") caption.appendChild(el("span", "truth", "already stored"));
  li.appendChild(caption);
  return li;
}

async function classify(files) {
  const drop = document.getElementById("drop");
  const status = document.getElementById("status");
  const results = document.getElementById("results");
  const maxFiles = Number(drop.dataset.maxFiles);
  const maxBytes = Number(drop.dataset.maxBytes);
  let list = Array.from(files);
  for (let start = 0; start < list.length; start += maxFiles) {
    const chunk = list.slice(start, start + maxFiles);
    const size = chunk.reduce((sum, f) => sum + f.size, 0);
    if (size > maxBytes) {
      status.textContent = "Too large: " + (size / 1048576).toFixed(1) + " MB in one request; the server takes " + (maxBytes / 1048576) + " MB.";
      return;
    }
    const form = new FormData();
    chunk.forEach((f) => form.append("files", f, f.name));
    status.textContent = "Classifying " + chunk.length + " photo(s)...";
    let response;
    try {
      response = await fetch("/api/classify", { method: "POST", body: form });
    } catch (e) {
      status.textContent = "The server cannot be reached: " + e;
      return;
    }
    if (response.status !== 200 && response.status !== 202) {
      status.textContent = "Refused: " + (await detail(response));
      continue;
    }
    const body = await response.json();
    body.data.forEach((item) => results.prepend(resultCard(item)));
    status.textContent = "Done: " + body.data.length + " photo(s)." + (response.status === 202 ? " Some are still being predicted; reload later." : "");
  }
}

function setUpUpload() {
  const drop = document.getElementById("drop");
  const input = document.getElementById("files");
  if (!drop || !input) return;
  input.addEventListener("change", () => {
    const files = Array.from(input.files);
    input.value = "";  // picking the same file again is a new change
    if (files.length) classify(files);
  });
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) classify(event.dataTransfer.files);
  });
}

function setUpLabel() {
  const form = document.getElementById("label-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = document.getElementById("label-status");
    const select = document.getElementById("ground-truth");
    const value = select.value || null;
    status.textContent = "saving...";
    const response = await fetch("/api/images/" + form.dataset.imageId + "/label", {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ground_truth: value }),
    });
    if (!response.ok) {
      status.textContent = "not saved: " + (await detail(response));
      return;
    }
    const chosen = select.options[select.selectedIndex].textContent;
    status.textContent = value ? "saved: labelled " + chosen : "saved: not labelled";
  });
}

function setUpPredict() {
  const button = document.getElementById("predict");
  if (!button) return;
  const page = document.querySelector("article.image");
  button.addEventListener("click", async () => {
    const status = document.getElementById("predict-status");
    button.disabled = true;
    const response = await fetch("/api/predict?img_id=" + page.dataset.imageId, { method: "POST" });
    if (!response.ok) {
      status.textContent = "refused: " + (await detail(response));
      button.disabled = false;
      return;
    }
    const task = (await response.json()).data.task_id;
    status.textContent = "predicting (task " + task + ")...";
    for (let i = 0; i < 600; i++) {  // at most 10 minutes: one look a second
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const state = await (await fetch("/api/tasks/" + task)).json();
      if (state.task_status === "SUCCESS") { window.location.reload(); return; }
      if (state.task_status === "FAILURE") { status.textContent = "failed: " + state.task_result; return; }
    }
    status.textContent = "still predicting; reload later";
  });
}

function setUpDelete() {
  const button = document.getElementById("delete");
  if (!button) return;
  const page = document.querySelector("article.image");
  button.addEventListener("click", async () => {
    if (!window.confirm("Delete this photo with its predictions?")) return;
    const response = await fetch("/api/images/" + page.dataset.imageId + "/", { method: "DELETE" });
    if (response.ok) window.location.assign("/");
    else window.alert("Not deleted: " + (await detail(response)));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpUpload();
  setUpLabel();
  setUpPredict();
  setUpDelete();
});
