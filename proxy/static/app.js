"use strict";
// The recommender's page. Routes (location.hash): #/ and #/user/<id> (recommendations and feedback),
// #/item/<id> (similar items), #/model[/<version>] (online metrics and A/B, evaluation, ScaNN check, training,
// versions),
// #/feedback (events over time). Plain DOM and inline SVG; every call goes to the API that served the page.

const KEY_STORAGE = "recsys-api-key";
let apiKey = sessionStorage.getItem(KEY_STORAGE);
const itemTitles = new Map();  // from every list shown: the item page's heading
// "model" is the candidate the blessing judged (trained without the eval split); the pushed model is its recipe
// retrained on every event and averaged with it, so its own scores here are of events it saw
// (tfx_pipeline/components/ranking_evaluator.py).
const SYSTEMS = {model: "this recipe, eval events held out", refit_on_all_events: "this model (saw the eval events)",
                 baseline_model: "last blessed model", ease: "EASE", most_popular: "most popular"};
const COLORS = {model: "#1e88e5", refit_on_all_events: "#0d47a1", baseline_model: "#90caf9", ease: "#8e24aa",
                most_popular: "#fb8c00",
                like: "#43a047", dislike: "#e53935", click: "#1e88e5", view: "#90a4ae", cart_add: "#fdd835",
                purchase: "#6d4c41", rating: "#8e24aa"};

// ---- the API ----

async function api(path, body) {
  let sent = apiKey;
  let response = await send(path, body, sent);
  if (response.status === 401 && askForKey(sent)) response = await send(path, body, (sent = apiKey));
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function send(path, body, key) {
  const headers = key ? {"X-API-Key": key} : {};
  if (body === undefined) return fetch(path, {headers});
  return fetch(path, {method: "POST", headers: {...headers, "Content-Type": "application/json"},
                      body: JSON.stringify(body)});
}

// Asks once: a call refused with a key that another call has replaced since just retries with the new one.
function askForKey(refused) {
  if (apiKey !== refused) return true;
  const key = prompt("This API needs a key (sent as the X-API-Key header):");
  if (!key) return false;
  apiKey = key;
  sessionStorage.setItem(KEY_STORAGE, key);
  return true;
}

// ---- building the page ----

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (typeof value === "function") node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.flat(2).filter((child) => child !== null && child !== undefined && child !== false));
  return node;  // text goes in as text nodes, never as HTML
}
const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
const svg = (tag, attrs, ...children) =>
  build(document.createElementNS("http://www.w3.org/2000/svg", tag), attrs, children);
const fixed = (x, digits = 3) => (typeof x === "number" ? x.toFixed(digits) : "–");
const sum = (values) => values.reduce((a, b) => a + b, 0);
const say = (node, text, error = false) => { node.textContent = text; node.className = error ? "error" : "note"; };
const pushTime = (version) => new Date(Number(version) * 1000).toLocaleString();

function itemLink(item) {
  if (item.title) itemTitles.set(item.item_id, item.title);
  return [h("a", {href: `#/item/${encodeURIComponent(item.item_id)}`}, item.title || item.item_id), " ",
          h("span", {class: "category"}, item.category || "")];
}

function legend(id, entries) {
  return h("p", {class: "legend", id}, entries.map(([name, color, note]) =>
    h("span", {}, h("i", {style: `background: ${color}`}), name, note === undefined ? "" : ` ${note}`)));
}

function table(rows, head) {
  return h("table", {}, head && h("tr", {}, head.map((cell) => h("th", {}, cell))),
           rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell)))));
}

// Vertical bars: a group per label with the series side by side, or stacked; each value written above its
// bar (stacked: the total). Series: {key, name, color, values (one per label)}.
function barChart({id, labels, series, stacked = false, format = fixed, tick = (label) => label}) {
  const bar = stacked ? 10 : 44, gap = stacked ? 4 : 28, margin = 34, plot = 160, top = 20;
  const group = stacked ? bar : bar * series.length;
  const totals = labels.map((_, i) => (stacked ? sum(series.map((s) => s.values[i] || 0))
                                                : Math.max(...series.map((s) => s.values[i] || 0))));
  const scale = plot / (Math.max(...totals) || 1);
  const width = labels.length * (group + gap) + gap + 2 * margin;  // margins: room for the edge labels
  const chart = svg("svg", {id, role: "img", width, height: top + plot + 24},
                    svg("line", {x1: 0, x2: "100%", y1: top + plot, y2: top + plot, stroke: "#999"}));
  labels.forEach((label, i) => {
    const left = margin + gap + i * (group + gap);
    let base = top + plot;
    series.forEach((s, j) => {
      const value = s.values[i] || 0, height = value * scale;
      const x = stacked ? left : left + j * bar, y = base - height;
      chart.append(svg("rect", {x, y, width: stacked ? bar : bar - 3, height, fill: s.color},
                       svg("title", {}, `${s.name}, ${label}: ${format(s.values[i])}`)));
      if (stacked) base -= height;
      else chart.append(svg("text", {x: x + bar / 2, y: y - 5, "text-anchor": "middle", "data-series": s.key,
                                     "data-label": label}, format(s.values[i])));
    });
    if (stacked && totals[i]) chart.append(svg("text", {x: left + bar / 2, y: base - 5, "text-anchor": "middle"},
                                               format(totals[i])));
    chart.append(svg("text", {x: left + group / 2, y: top + plot + 16, "text-anchor": "middle"}, tick(label, i)));
  });
  return chart;
}

// A horizontal bar for a value between 0 and 1.
function meter(id, value) {
  return svg("svg", {id, role: "img", width: 380, height: 28},
             svg("rect", {x: 0, y: 6, width: 320, height: 16, fill: "#eceff1"}),
             svg("rect", {x: 0, y: 6, width: 320 * Math.min(Math.max(value || 0, 0), 1), height: 16, fill: "#43a047"}),
             svg("text", {x: 326, y: 19}, fixed(value)));
}

// ---- pages ----

async function userPage(root, userId) {
  const input = h("input", {name: "user", list: "example-users", placeholder: "a user id", required: "",
                            value: userId || ""});
  const examples = h("datalist", {id: "example-users"});
  root.append(h("form", {onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/user/${encodeURIComponent(input.value.trim())}`;
  }}, h("label", {}, "User ", input), examples, h("button", {}, "Show")));
  const {users} = await api("users");
  examples.append(...users.map((user) => h("option", {value: user})));
  if (!userId) {
    root.append(h("p", {id: "examples"}, "Users the model knows: ",
                  users.map((user) => [h("a", {href: `#/user/${encodeURIComponent(user)}`}, user), " "])));
    return;
  }
  const historyHeading = h("h2"), history = h("ol", {id: "history"});
  const heading = h("h2"), note = h("p", {class: "note"}), list = h("ol", {id: "recommendations"});
  root.append(h("div", {class: "columns"}, h("section", {}, historyHeading, history),
                h("section", {}, heading, note, list)));
  let shown = null;  // the ids on screen: the ones a refresh brings in are marked

  async function refresh() {
    const [past, answer] = await Promise.all([api(`users/${encodeURIComponent(userId)}/history`),
                                              api("recommend", {user_id: userId})]);
    historyHeading.replaceChildren(`Recent history of ${userId}`,
                                   h("span", {class: "muted"}, ` (${past.seen} items seen, left out below)`));
    history.replaceChildren(...past.history.map((item) => h("li", {}, itemLink(item))));
    if (!past.history.length) {
      history.append(h("li", {class: "muted"}, past.known ? "none yet" : "none: a user the model does not know"));
    }
    heading.replaceChildren("Recommendations", h("span", {class: "muted", id: "model-version"},
      ` model ${answer.model_version}`, answer.fallback ? ` (fallback: ${answer.fallback})` : ""));
    list.replaceChildren(...answer.recommendations.map((r) => h("li",
      {"data-item-id": r.item_id, class: shown && !shown.has(r.item_id) ? "new" : ""},
      itemLink(r), h("span", {class: "score"}, fixed(r.score)),
      ["like", "dislike", "click"].map((type) => h("button", {onclick: () => react(r, type, answer.request_id)},
                                                   type)))));
    shown = new Set(answer.recommendations.map((r) => r.item_id));
  }

  async function react(item, type, requestId) {
    const buttons = list.querySelectorAll("button");
    buttons.forEach((button) => { button.disabled = true; });
    try {
      await api("feedback", {user_id: userId, item_id: item.item_id, feedback_type: type, request_id: requestId});
      say(note, `${type} on “${item.title || item.item_id}” stored: ` +
                (type === "dislike" ? "it is left out now." : "it joins the history and leaves the list."));
      await refresh();
    } catch (error) {
      say(note, error.message, true);
      buttons.forEach((button) => { button.disabled = false; });
    }
  }

  await refresh();
}

async function itemPage(root, itemId) {
  const answer = await api(`similar/${encodeURIComponent(itemId)}?k=10`);
  root.append(h("h2", {}, itemTitles.get(itemId) || itemId,
                h("span", {class: "muted"}, ` item ${itemId}, model ${answer.model_version}`)),
              h("h2", {}, "Similar items"),
              h("ol", {id: "similar"}, answer.similar.map((item) =>
                h("li", {}, itemLink(item), h("span", {class: "score"}, fixed(item.score))))));
}

async function modelPage(root, version) {
  const [{versions}, shown, online, skew] = await Promise.all([api("model/versions?limit=100"),
    version ? null : api("model"), api("monitor/online"), version ? null : api("monitor/skew")]);
  const current = shown || versions.find((v) => v.version === version);
  if (!current) throw new Error(`version ${version} is not among the newest 100 pushed`);
  const heading = h("h2", {id: "version"}, `Model version ${current.version}`, h("span", {class: "muted"},
                    ` pushed ${pushTime(current.version)}${current.serving ? ", serving now" : ""}`));
  build(root, {}, [heading, onlineView(online), skew ? skewView(skew) : [], evaluationView(current.evaluation), exportView(current.export_report),
                   versionsView(versions)]);
}

// What the API served and what users did with it (proxy/online_metrics.py), per version and variant.
function onlineView(report) {
  const hours = Math.round((Date.parse(report.until) - Date.parse(report.since)) / 3600e3);
  const heading = h("h2", {}, `Online, last ${hours} h`);
  if (!report.versions.length) return [heading, h("p", {class: "muted", id: "online-none"}, "no answers recorded yet")];
  const k = report.k, percent = (x) => (x === null ? "–" : `${(100 * x).toFixed(1)} %`);
  const rows = report.versions.map((r) => h("tr", {"data-version": r.model_version, "data-variant": r.variant},
    h("td", {}, r.model_version), h("td", {}, r.variant || "–"), h("td", {class: "number"}, String(r.requests)),
    h("td", {class: "number"}, String(r.clicks)), h("td", {class: "number ctr"}, percent(r.ctr)),
    h("td", {class: "number"}, percent(r.conversion)), h("td", {class: "number"}, percent(r.coverage)),
    h("td", {class: "number"}, percent(r.fallback_share))));
  return [heading,
          h("table", {id: "online"}, h("tr", {}, ["version", "variant", "requests", "clicked", `CTR@${k}`,
            `conversion@${k}`, `coverage@${k}`, "fallbacks"].map((name) => h("th", {}, name))), rows),
          h("p", {id: "ab"}, report.ab.summary)];
}

// How far the served items and the feedback are from the serving version's training data (proxy/skew.py).
function skewView(report) {
  const hours = Math.round((Date.parse(report.until) - Date.parse(report.since)) / 3600e3);
  const rows = report.sources.flatMap((s) => (s.distances.length ? s.distances : [null]).map((d) =>
    h("tr", d ? {"data-source": s.source, "data-feature": d.feature, "data-comparator": d.comparator,
                 class: d.drift ? "skew" : ""} : {"data-source": s.source},
      h("td", {}, s.source), h("td", {class: "number"}, String(s.events)),
      d ? [h("td", {}, d.feature), h("td", {}, d.comparator), h("td", {class: "number distance"}, d.distance.toFixed(4)),
           h("td", {class: "number"}, String(d.threshold)), h("td", {}, d.drift ? "skew" : "")]
        : h("td", {colspan: 5, class: "muted"}, `too few events (under ${report.min_events})`))));
  return [h("h2", {}, `Skew from the training data, last ${hours} h`),
          h("table", {id: "skew"}, h("tr", {}, ["source", "events", "feature", "comparator", "distance", "threshold", ""]
            .map((name) => h("th", {}, name))), rows),
          h("p", {id: "skew-summary"}, report.summary)];
}

function evaluationView(evaluation) {
  if (!evaluation) return h("p", {class: "muted", id: "no-evaluation"}, "no evaluation stored for this version");
  const k = evaluation.k || 10, labels = [`recall@${k}`, `ndcg@${k}`, "coverage"];
  const order = Object.keys(SYSTEMS);
  const rank = (key) => (order.includes(key) ? order.indexOf(key) : order.length);
  const series = Object.keys(evaluation.metrics).sort((a, b) => rank(a) - rank(b)).map((key) => ({
    key, name: SYSTEMS[key] || key, color: COLORS[key] || "#9e9e9e",
    values: labels.map((label) => evaluation.metrics[key][label])}));
  return [h("h2", {}, `Evaluation on ${evaluation.metrics.model?.users ?? "?"} held-out users`),
          h("p", {id: "blessing"}, evaluation.blessed ? "Blessed: " : "Not blessed: ", evaluation.reason || ""),
          barChart({id: "evaluation-chart", labels, series}),
          legend("evaluation-legend", series.map((s) => [s.name, s.color]))];
}

const splits = (names) => (names || []).join(" + ") || "–";

function exportView(report) {
  if (!report) return h("p", {class: "muted"}, "no export report stored for this version");
  return [h("h2", {}, "ScaNN against brute force"),
          h("p", {}, `recall@10 of the ScaNN index against exact search, ${report.scann_check_queries} queries:`),
          meter("scann-recall", report.scann_recall_at_10_vs_exact),
          h("h2", {}, "Training"),
          table([["trained on", splits(report.train_splits)],
                 ...(report.averaged_with ? [["scores", "the mean of this model's and one trained on " +
                                              splits(report.averaged_with.train_splits)]] : []),
                 ["training time", `${fixed(report.train_seconds, 1)} s`], ["users", report.num_users],
                 ["items", report.num_items], ["final loss", fixed(report.final_loss)],
                 ["final validation loss", fixed(report.final_val_loss)]]),
          h("details", {}, h("summary", {}, "hyperparameters"),
            table(Object.entries(report.hyperparameters || {}).map(([name, value]) => [name, String(value)])))];
}

function versionsView(versions) {
  const metric = (v, name) => fixed(v.evaluation?.metrics?.model?.[name]);
  const blessed = (v) => (v.evaluation ? (v.evaluation.blessed ? "yes" : "no") : "–");
  const rows = versions.map((v) => h("tr", {class: v.serving ? "serving" : ""},
    h("td", {}, h("a", {href: `#/model/${v.version}`}, v.version)), h("td", {}, pushTime(v.version)),
    h("td", {class: "number"}, fixed(v.export_report?.train_seconds, 1)),
    h("td", {class: "number"}, fixed(v.export_report?.scann_recall_at_10_vs_exact)),
    h("td", {class: "number"}, metric(v, "recall@10")), h("td", {class: "number"}, metric(v, "ndcg@10")),
    h("td", {}, blessed(v))));
  return [h("h2", {}, "Pushed versions"),
          h("table", {id: "versions"}, h("tr", {}, ["version", "pushed", "training s", "ScaNN recall@10",
            "recall@10", "nDCG@10", "blessed"].map((name) => h("th", {}, name))), rows)];
}

async function feedbackPage(root) {
  const select = h("select", {name: "bucket", onchange: () => update()},
                   ["minute", "hour", "day"].map((bucket) => h("option", {value: bucket}, `per ${bucket}`)));
  const chart = h("div"), status = h("p", {class: "note"}), totals = h("div");
  root.append(h("h2", {}, "Feedback events"),
              h("form", {}, h("label", {}, "Events ", select),
                h("span", {class: "muted"}, " in the last 60 periods (UTC, by event time); refreshed every 5 s")),
              chart, status, h("h2", {}, "All stored events"), totals);
  const ticks = {minute: (start) => start.slice(11, 16), hour: (start) => `${start.slice(5, 10)} ${start.slice(11, 13)}h`,
                 day: (start) => start.slice(0, 10)};

  async function refresh() {
    const stats = await api(`feedback/stats?bucket=${select.value}&buckets=60`);
    const series = Object.entries(stats.counts).map(([type, values]) =>
      ({key: type, name: type, color: COLORS[type] || "#9e9e9e", values}));
    const tick = (start, i) => (i % 10 === 0 || i === stats.starts.length - 1 ? ticks[stats.bucket](start) : "");
    chart.replaceChildren(barChart({id: "feedback-chart", labels: stats.starts, series, stacked: true,
                                    format: String, tick}),
                          legend("feedback-legend", series.map((s) => [s.name, s.color, sum(s.values)])));
    const types = Object.entries(stats.totals);
    totals.replaceChildren(types.length ? table(types, ["type", "events"]) : h("p", {class: "muted"}, "none yet"));
  }

  const update = () => refresh().then(() => say(status, ""), (error) => say(status, error.message, true));
  await refresh();
  const timer = setInterval(() => (root.isConnected ? update() : clearInterval(timer)), 5000);  // until left
}

// ---- routing ----

const ROUTES = [[/^#\/item\/(.+)$/, itemPage], [/^#\/model(?:\/(\d+))?$/, modelPage],
                [/^#\/feedback$/, feedbackPage], [/^#\/user\/(.+)$/, userPage], [/(?:)/, userPage]];

async function route() {
  const root = h("div");  // each visit renders into its own root: a slow answer for a page left behind goes nowhere
  document.getElementById("view").replaceChildren(root);
  const [pattern, page] = ROUTES.find(([pattern]) => pattern.test(location.hash));
  try {
    const argument = location.hash.match(pattern)[1];
    await page(root, argument && decodeURIComponent(argument));
  } catch (error) {
    root.append(h("p", {class: "error"}, error.message));
  }
}

window.addEventListener("hashchange", route);
route();
