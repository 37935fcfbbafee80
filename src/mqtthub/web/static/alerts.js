// mqtthub dashboard: the Alerts page (open alerts with "Acknowledge", resolved ones, rules).
// Uses app.js's helpers; every stored string is put into the page with textContent.
"use strict";

async function postJson(path, body, method = "POST") {
  const response = await api(path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.status === 204 ? null : response.json();
}

function valueText(value) { return value === null || value === undefined ? "" : formatValue(value); }

function scopeText(rule) {
  if (rule.device_id) return rule.device_id;
  if (rule.labels && Object.keys(rule.labels).length) {
    return Object.entries(rule.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  }
  return "all devices";
}

function conditionText(rule) {
  const span = rule.for_seconds ? ` for ${rule.for_seconds} s` : "";
  if (rule.condition === "offline" || rule.condition === "no_data") return `${rule.condition}${span}`;
  if (rule.condition === "dead_letters") return `> ${rule.threshold} dead letters in ${rule.for_seconds} s`;
  const limit = rule.condition === "outside" ? `outside ${rule.threshold}…${rule.threshold_high}` : `${rule.condition} ${rule.threshold}`;
  return `${rule.metric} ${rule.window_average ? "average " : ""}${limit}${span}`;
}

async function loadAlerts() {
  const [open, resolved, rules] = await Promise.all([
    apiJson("/api/alerts?state=open"),
    apiJson("/api/alerts?state=resolved&limit=20"),
    apiJson("/api/alert-rules"),
  ]);
  $("open-alert-rows").replaceChildren(...open.map((alert) => {
    const ack = alert.state === "firing" ? el("button", { type: "button", text: "Acknowledge" }) : null;
    if (ack) ack.addEventListener("click", () => postJson(`/api/alerts/${encodeURIComponent(alert.id)}/ack`, {}).then(loadAlerts).catch(showError));
    return el("tr", { class: alert.state },
      el("td", { text: when(alert.started_at) }), el("td", { text: alert.device_id }),
      el("td", { text: alert.rule_name || alert.rule_id }), el("td", { text: alert.state }),
      el("td", { text: valueText(alert.value) }), el("td", {}, ack));
  }));
  $("resolved-alert-rows").replaceChildren(...resolved.map((alert) => el("tr", {},
    el("td", { text: when(alert.started_at) }), el("td", { text: when(alert.resolved_at) }),
    el("td", { text: alert.device_id }), el("td", { text: alert.rule_name || alert.rule_id }),
    el("td", { text: valueText(alert.value) }))));
  $("rule-rows").replaceChildren(...rules.map((rule) => {
    const remove = el("button", { type: "button", text: "Delete" });
    remove.addEventListener("click", () => postJson(`/api/alert-rules/${encodeURIComponent(rule.id)}`, undefined, "DELETE").then(loadAlerts).catch(showError));
    return el("tr", {},
      el("td", { text: rule.name }), el("td", { text: conditionText(rule) }),
      el("td", { text: scopeText(rule) }),
      el("td", { text: rule.notify.map((c) => c.url || c.topic || c.to).join(", ") }),
      el("td", {}, remove));
  }));
}

function ruleFromForm(form) {
  const data = new FormData(form);
  const text = (name) => String(data.get(name) || "").trim();
  const number = (name) => (text(name) === "" ? null : Number(text(name)));
  const rule = { name: text("name"), condition: text("condition"), for_seconds: number("for_seconds") || 0 };
  for (const key of ["metric", "device_id"]) if (text(key)) rule[key] = text(key);
  for (const key of ["threshold", "threshold_high"]) if (number(key) !== null) rule[key] = number(key);
  const label = text("label");
  if (label.includes("=")) rule.labels = { [label.split("=")[0].trim()]: label.slice(label.indexOf("=") + 1).trim() };
  if (text("webhook")) rule.notify = [{ type: "webhook", url: text("webhook") }];
  return rule;
}

document.addEventListener("DOMContentLoaded", () => {
  $("rule-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("rule-error").textContent = "";
    postJson("/api/alert-rules", ruleFromForm(event.target))
      .then(() => { event.target.reset(); return loadAlerts(); })
      .catch((error) => { $("rule-error").textContent = String(error.message || error); });
  });
});
