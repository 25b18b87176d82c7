/* django-ws: the admin's "Realtime" page. No build step: plain DOM and inline SVG.
 *
 * The page arrives with its first figures (#rt-data). With a live socket
 * (the project's own WebSocket route, RealtimeHandler) it asks for fresh
 * figures every few seconds and redraws; when the socket is refused, or
 * the route is not mounted, it reloads itself instead.
 */
(function () {
  "use strict";
  var EVERY_MS = 2000, RELOAD_MS = 5000;
  var config = JSON.parse(document.getElementById("rt-config").textContent);
  var view = JSON.parse(document.getElementById("rt-data").textContent);
  var body = document.getElementById("rt-body");
  var status = document.getElementById("rt-status");
  var csrf = document.querySelector("#rt-csrf input[name=csrfmiddlewaretoken]").value;
  var query = {group: (view.query && view.query.group) || "", offset: (view.query && view.query.offset) || 0};
  var socket = null, timer = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }

  function table(headers, rows, attrs) {
    return el("table", attrs || {}, [
      el("thead", {}, [el("tr", {}, headers.map(function (h) { return el("th", {}, [h]); }))]),
      el("tbody", {}, rows.map(function (r) {
        return el("tr", r.attrs || {}, r.cells.map(function (c) { return el("td", {}, [c]); }));
      }))
    ]);
  }

  function section(title, content) {
    return el("section", {}, [el("h2", {}, [title])].concat(content));
  }

  function input(type, name, value, extra) {
    var attrs = Object.assign({type: type, name: name, value: value}, extra || {});
    return el("input", attrs);
  }

  function postForm(action, fields, label) {
    var form = el("form", {method: "post", action: action, "class": "rt-inline"}, [
      input("hidden", "csrfmiddlewaretoken", csrf), input("hidden", "back_group", query.group)
    ].concat(fields, [el("button", {type: "submit"}, [label])]));
    return form;
  }

  function duration(s) {
    if (s == null) return "";
    var h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
    return (h ? h + " h " : "") + m + " min " + Math.floor(s % 60) + " s";
  }

  function seconds(s) { return s == null ? "–" : (s * 1000).toFixed(2) + " ms"; }

  /* One polyline on a small SVG: points are [x, y]; the axis says the latest value and the range. */
  function plot(title, points, unit) {
    var W = 420, H = 120, P = 4;
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H + 18);
    svg.setAttribute("role", "img"); svg.setAttribute("aria-label", title);
    if (points.length) {
      var x0 = points[0][0], x1 = points[points.length - 1][0] || x0 + 1;
      var ymax = Math.max.apply(null, points.map(function (p) { return p[1]; }).concat([1]));
      var line = document.createElementNS(svg.namespaceURI, "polyline");
      line.setAttribute("points", points.map(function (p) {
        var x = P + (W - 2 * P) * (x1 === x0 ? 1 : (p[0] - x0) / (x1 - x0));
        var y = P + (H - 2 * P) * (1 - p[1] / ymax);
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" "));
      svg.appendChild(line);
      var label = document.createElementNS(svg.namespaceURI, "text");
      label.setAttribute("x", P); label.setAttribute("y", H + 14);
      label.textContent = "now " + points[points.length - 1][1] + " " + unit + ", max " + ymax +
        ", last " + Math.round((x1 - x0) / 60) + " min";
      svg.appendChild(label);
    }
    return el("div", {}, [el("h3", {}, [title]), svg]);
  }

  function latency(edge) {
    var d = edge.delivery_latency;
    if (!d) return "not measured";
    // What was measured (the edge's own sentence) on hover: the figures are read at a glance.
    return el("span", {title: d.measured || ""}, [d.count + " deliveries; p50 " + seconds(d.p50_s) + ", p90 " +
      seconds(d.p90_s) + ", p99 " + seconds(d.p99_s)]);
  }

  function render(v) {
    view = v;
    var t = v.totals, parts = [];
    if (v.error) parts.push(el("p", {"class": "errornote"}, [v.error]));
    parts.push(el("p", {}, [
      "Connections: ", el("strong", {id: "rt-total-connections"}, [t.connections]),
      " on " + t.answering + " of " + t.edges + " edge(s); " + t.workers + " worker link(s); " +
      t.groups + " group(s). Gathered in " + v.took_ms + " ms."
    ]));
    parts.push(section("Edges", [table(
      ["Edge", "Address", "Uptime", "Connections", "Workers (mode: load)", "Delivery latency"],
      v.edges.map(function (e) {
        if (e.error) return {attrs: {"class": "rt-dead"}, cells: [e.endpoint, "not answering", e.error, "", "", ""]};
        return {cells: [e.edge_id + " (" + e.endpoint + ")", e.address, duration(e.uptime_s), e.connections,
          e.workers.map(function (w) { return w.id + " (" + w.mode + ": " + w.load + ")"; }).join(", ") || "none",
          latency(e)]};
      }), {id: "rt-edges"})]));
    parts.push(el("div", {"class": "rt-plots"}, [
      plot("Connections", v.series.map(function (p) { return [p[0], p[1]]; }), "connections"),
      plot("Messages per second", v.series.map(function (p) { return [p[0], p[2]]; }), "msg/s")
    ]));
    parts.push(section("Connections by route", [table(["Route", "Connections"],
      Object.keys(v.connections_by_route).map(function (k) {
        return {cells: [k || "(unnamed)", v.connections_by_route[k]]};
      }), {id: "rt-routes"})]));
    parts.push(section("Largest groups", [table(["Group", "Members", "Edges", "History window"],
      v.largest_groups.map(function (g) {
        var h = g.history;
        return {cells: [g.name, g.size, g.edges, h ? h.size + " messages / " + h.ttl_s + " s (kept " + h.kept + ")" : "none"]};
      }), {id: "rt-groups"})]));
    parts.push(groupSection(v.group));
    parts.push(section("Closes by code, since each edge started", [table(["Code", "Connections"],
      Object.keys(v.closed_by_code).map(function (k) { return {cells: [k, v.closed_by_code[k]]}; }))]));
    parts.push(section("Rate-limit strikes", [table(["Limit", "Strikes"],
      Object.keys(v.rate_limit_strikes).map(function (k) { return {cells: [k, v.rate_limit_strikes[k]]}; }))]));
    body.replaceChildren.apply(body, parts);
  }

  function groupSection(g) {
    var search = el("form", {id: "rt-search"}, [
      input("search", "group", query.group, {id: "rt-group", placeholder: "group name"}),
      el("button", {type: "submit"}, ["Search"])
    ]);
    search.addEventListener("submit", function (event) {
      event.preventDefault();
      query = {group: document.getElementById("rt-group").value.trim(), offset: 0};
      ask();
    });
    var content = [search];
    if (config.can_send) {
      content.push(el("p", {}, [postForm(config.send, [
        input("text", "group", query.group, {placeholder: "group", required: "required"}),
        input("text", "data", "test message", {"aria-label": "message"})
      ], "Send a test message")]));
    }
    if (g) {
      content.push(el("p", {id: "rt-group-size"}, [g.name + ": " + g.size + " member(s) on all edges; showing from " +
        (g.offset + 1) + ", up to " + g.limit + " per edge"]));
      content.push(table(["Connection", "Route", "Path", "Edge", ""], g.members.map(function (m) {
        var action = config.can_close ? postForm(config.close, [
          input("hidden", "connection", m.id),
          input("number", "code", "4000", {min: "1000", max: "4999", "aria-label": "close code"}),
          input("text", "reason", "closed by staff", {"aria-label": "reason", maxlength: "123"})
        ], "Close") : "";
        return {attrs: {"data-connection": m.id}, cells: [m.id, m.route, m.path, m.edge_id, action]};
      }), {id: "rt-members"}));
      var pager = el("p", {}, []);
      if (g.offset > 0) pager.appendChild(pageLink("‹ previous", Math.max(g.offset - g.limit, 0)));
      if (g.members.length && g.offset + g.limit < g.size) pager.appendChild(pageLink("next ›", g.offset + g.limit));
      content.push(pager);
    }
    return section("Members of a group", content);
  }

  function pageLink(label, offset) {
    var a = el("a", {href: "?group=" + encodeURIComponent(query.group) + "&offset=" + offset}, [label]);
    a.addEventListener("click", function (event) {
      event.preventDefault();
      query.offset = offset;
      ask();
    });
    return a;
  }

  function ask() {
    clearTimeout(timer);
    if (socket && socket.readyState === 1) {
      socket.send(JSON.stringify(query));
    } else {
      var params = new URLSearchParams({group: query.group, offset: query.offset});
      window.location.search = params.toString();
    }
  }

  function fallBack(why) {
    status.textContent = "Not live (" + why + "): reloading every " + RELOAD_MS / 1000 + " s.";
    status.dataset.mode = "reload";
    setTimeout(function () {
      var params = new URLSearchParams({group: query.group, offset: query.offset});
      window.location.search = params.toString();
    }, RELOAD_MS);
  }

  function connect() {
    if (!config.socket || !window.WebSocket) return fallBack("no live route mounted");
    var opened = false;
    socket = new WebSocket(config.socket);
    socket.onopen = function () {
      opened = true;
      status.textContent = "Live: updated every " + EVERY_MS / 1000 + " s through this project's WebSocket.";
      status.dataset.mode = "live";
      ask();
    };
    socket.onmessage = function (event) {
      var typing = document.activeElement;
      // Not while staff fill in an action's form: a redraw would wipe what they typed.
      if (!(typing && typing.closest && typing.closest("form.rt-inline"))) render(JSON.parse(event.data));
      clearTimeout(timer);
      timer = setTimeout(ask, EVERY_MS);
    };
    socket.onclose = function (event) {
      socket = null;
      clearTimeout(timer);
      fallBack(opened ? "the socket closed with " + event.code : "the socket was refused");
    };
  }

  render(view);
  connect();
})();
