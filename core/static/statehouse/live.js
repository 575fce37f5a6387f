/*
 * Statehouse live pages.
 *
 * A page is rendered complete by the server; this script keeps it current. It opens the
 * WebSocket feed named by the page's [data-live-feed] element and:
 *   - sets the text and colour of every status badge (span[data-live-entity][data-live-id])
 *     of an entity whose state changed;
 *   - updates the current run's step, node and progress bar from the run's events, and
 *     shows messages as the run streams them;
 *   - updates token and cost figures from usage events;
 *   - re-reads from the server the page sections ([data-fragment]) that an event concerns
 *     (?fragment=<name>), when the server has more to say than the event carries.
 * Once subscribed (and again after a dropped socket is reopened, with exponential backoff,
 * the page saying so meanwhile) it re-reads every section and badge: events sent before
 * the subscription never reached the page.
 */
(function () {
  "use strict";

  var feedElement = document.querySelector("[data-live-feed]");
  var feed = feedElement && feedElement.getAttribute("data-live-feed");
  if (!feed || !window.WebSocket) return;

  var indicator = document.querySelector("[data-live-indicator]");
  var socket = null;
  var attempts = 0;
  var stopped = false;
  var retryTimer = null;
  var countdownTimer = null;
  var progressMemory = {}; // run id -> {step, of, node}

  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var REFRESH_DELAY_MS = { "*": 400, step: 800 };

  // --- connection ----------------------------------------------------------------------

  function say(state, text) {
    if (!indicator) return;
    indicator.setAttribute("data-state", state);
    indicator.textContent = text;
  }

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + feed;
  }

  function connect() {
    retryTimer = null;
    say(attempts ? "reconnecting" : "connecting", attempts ? "Reconnecting…" : "Connecting…");
    try {
      socket = new WebSocket(socketUrl());
    } catch (error) {
      scheduleReconnect();
      return;
    }
    socket.onmessage = function (message) {
      var data;
      try {
        data = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      handle(data);
    };
    socket.onclose = function (event) {
      socket = null;
      if (stopped) return;
      if (event.code === 4401) {
        stop("closed", "Logged out: log in again to see live updates.");
      } else if (event.code === 4403) {
        stop("closed", "Live updates stopped: you may no longer see this page.");
      } else if (event.code === 4404) {
        stop("closed", "This object was deleted.");
      } else {
        scheduleReconnect();
      }
    };
  }

  function stop(state, text) {
    stopped = true;
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    say(state, text);
  }

  function scheduleReconnect() {
    var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempts));
    delay = Math.round(delay * (0.75 + Math.random() * 0.5));
    attempts += 1;
    var due = Date.now() + delay;
    var tell = function () {
      var seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      var hint = attempts > 3 ? " (if this lasts, reload the page: you may have been logged out)" : "";
      say("reconnecting", "Disconnected: reconnecting in " + seconds + " s" + hint);
    };
    tell();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tell, 1000);
    retryTimer = setTimeout(function () {
      clearInterval(countdownTimer);
      connect();
    }, delay);
  }

  window.addEventListener("online", function () {
    if (retryTimer && !stopped) {
      clearTimeout(retryTimer);
      clearInterval(countdownTimer);
      connect();
    }
  });
  window.addEventListener("pagehide", function () {
    stopped = true;
    if (socket) socket.close(1000);
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      // Back from the page cache: the socket was closed and events were missed.
      stopped = false;
      attempts = 0;
      connect();
    }
  });

  // --- events --------------------------------------------------------------------------

  function handle(message) {
    switch (message.type) {
      case "subscribed":
        attempts = 0;
        // Catch up with what changed between the page's rendering (or the socket's
        // drop) and this subscription: those events were never sent to this page.
        say("syncing", "Catching up…");
        var subscribedOn = socket;
        Promise.all([refreshAll(), resyncBadges()]).then(function () {
          if (socket === subscribedOn && !stopped) say("live", "Live");
        });
        break;
      case "state.changed":
        onStateChanged(message);
        break;
      case "run.event":
        onRunEvent(message);
        break;
      case "usage.recorded":
        onUsage(message);
        break;
      default:
        break;
    }
  }

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  function setBadge(element, status) {
    element.className = element.className.replace(/\bsh-status-\S+/g, "").trim();
    element.classList.add("sh-status-" + status);
    element.textContent = status;
  }

  function onStateChanged(message) {
    if (message.status) {
      each('[data-live-entity="' + message.entity + '"][data-live-id="' + message.id + '"]', function (el) {
        setBadge(el, message.status);
      });
    }
    refreshFor(message.entity);
  }

  function onUsage(message) {
    var figures = [
      ["thread", message.thread_id, message.thread_total_tokens, message.thread_total_cost],
      ["session", message.session_id, message.session_total_tokens, message.session_total_cost],
    ];
    figures.forEach(function (figure) {
      if (!figure[1]) return;
      each("[data-usage-" + figure[0] + '="' + figure[1] + '"]', function (el) {
        var field = el.getAttribute("data-usage-field");
        if (field === "tokens" && figure[2] != null) el.textContent = formatTokens(figure[2]);
        if (field === "cost" && figure[3] != null) el.textContent = formatMoney(figure[3]);
      });
    });
    refreshFor("usage");
  }

  function onRunEvent(message) {
    var panel = fragment("run");
    var data = message.data;
    if (panel) {
      var shown = panel.getAttribute("data-run-id");
      if (shown !== message.run_id && !panel.hasAttribute("data-pinned")) {
        scheduleRefresh("run"); // a newer run than the one shown
      }
    }
    var memory = progressMemory[message.run_id] || (progressMemory[message.run_id] = {});
    switch (message.event) {
      case "metadata": // a new attempt starts over
        progressMemory[message.run_id] = {};
        break;
      case "progress":
        if (data && typeof data.step === "number") {
          memory.step = Math.max(memory.step || 0, data.step);
          memory.node = (data.nodes || []).join(", ");
        }
        refreshFor("step");
        break;
      case "custom":
        if (data && typeof data.of === "number" && data.of > 0) {
          memory.of = data.of;
          if (typeof data.step === "number") memory.step = Math.max(memory.step || 0, data.step);
        }
        break;
      case "messages":
        if (Array.isArray(data) && data[0]) streamChunk(data[0]);
        break;
      case "values":
        if (data && Array.isArray(data.messages)) showMessages(data.messages);
        break;
      case "updates":
        if (data && typeof data === "object") {
          Object.keys(data).forEach(function (node) {
            var update = data[node];
            if (update && Array.isArray(update.messages)) update.messages.forEach(addMessage);
          });
        }
        break;
      case "end":
      case "error":
        scheduleRefresh("run", 100);
        break;
      default:
        break;
    }
    if (panel && panel.getAttribute("data-run-id") === message.run_id) showProgress(panel);
  }

  function showProgress(panel) {
    var memory = progressMemory[panel.getAttribute("data-run-id")];
    if (!memory) return;
    var stepElement = panel.querySelector("[data-progress-step]");
    var rendered = stepElement ? parseInt(stepElement.textContent, 10) || 0 : 0;
    var step = Math.max(rendered, memory.step || 0);
    if (stepElement) stepElement.textContent = String(step);
    if (memory.node) {
      var node = panel.querySelector("[data-progress-node]");
      if (node) node.textContent = memory.node;
    }
    var ofElement = panel.querySelector("[data-progress-of]");
    var of = memory.of || (ofElement && parseInt(ofElement.textContent, 10)) || 0;
    if (of > 0) {
      if (ofElement) ofElement.textContent = String(of);
      var total = panel.querySelector("[data-progress-total]");
      if (total) total.hidden = false;
      var bar = panel.querySelector("[data-progress-bar]");
      if (bar) {
        bar.max = of;
        bar.value = Math.min(step, of);
        bar.textContent = Math.round((100 * Math.min(step, of)) / of) + "%";
        bar.hidden = false;
      }
    }
  }

  // --- messages ------------------------------------------------------------------------

  var ROLES = { human: "user", ai: "assistant", tool: "tool", system: "system" };

  function messageRole(type) {
    var kind = String(type || "").toLowerCase().replace(/chunk$/, "").replace(/message$/, "");
    return ROLES[kind] || kind || "message";
  }

  function contentText(content) {
    if (content == null) return "";
    if (typeof content === "string") return content;
    if (Array.isArray(content)) {
      return content
        .map(function (block) {
          if (typeof block === "string") return block;
          if (block && typeof block.text === "string") return block.text;
          return JSON.stringify(block);
        })
        .join("");
    }
    return JSON.stringify(content);
  }

  function toolCalls(message) {
    return (message.tool_calls || []).map(function (call) {
      return (call.name || "?") + "(" + JSON.stringify(call.args || {}) + ")";
    });
  }

  function messageList() {
    return document.querySelector("[data-messages]");
  }

  function messageItem(list, message) {
    var id = message.id || "";
    var item = null;
    if (id) {
      each("[data-message-id]", function (el) {
        if (el.getAttribute("data-message-id") === id) item = el;
      }, list);
    }
    if (!item) {
      var role = messageRole(message.type);
      item = document.createElement("li");
      item.className = "sh-message sh-role-" + role + " sh-streamed";
      item.setAttribute("data-message-id", id);
      var label = document.createElement("span");
      label.className = "sh-role";
      label.textContent = role;
      var text = document.createElement("div");
      text.className = "sh-text";
      item.appendChild(label);
      item.appendChild(text);
      list.appendChild(item);
      var empty = document.querySelector("[data-messages-empty]");
      if (empty) empty.hidden = true;
    }
    return item;
  }

  function fillMessage(item, message) {
    var text = item.querySelector(".sh-text");
    text.textContent = contentText(message.content);
    toolCalls(message).forEach(function (call) {
      var code = document.createElement("code");
      code.className = "sh-tool-call";
      code.textContent = call;
      text.appendChild(document.createTextNode(" "));
      text.appendChild(code);
    });
  }

  function addMessage(message) {
    var list = messageList();
    if (!list || !message || typeof message !== "object") return;
    fillMessage(messageItem(list, message), message);
  }

  function showMessages(messages) {
    var list = messageList();
    if (!list) return;
    messages.slice(-50).forEach(addMessage);
  }

  function streamChunk(chunk) {
    var list = messageList();
    if (!list || !chunk || typeof chunk !== "object") return;
    var item = messageItem(list, chunk);
    if (/chunk$/i.test(String(chunk.type || ""))) {
      // A token (or a few) of a message being written: append it.
      item.querySelector(".sh-text").textContent += contentText(chunk.content);
    } else {
      fillMessage(item, chunk); // a whole message (a model that does not stream, a tool)
    }
  }

  // --- sections re-read from the server ------------------------------------------------

  var refreshTimers = {};
  var refreshing = {};
  var refreshAgain = {};

  function fragment(name) {
    return document.querySelector('[data-fragment="' + name + '"]');
  }

  function refreshFor(topic) {
    each("[data-fragment]", function (el) {
      var topics = (el.getAttribute("data-refresh-on") || "").split(/\s+/);
      if (topics.indexOf("*") >= 0 || topics.indexOf(topic) >= 0) {
        var delay = REFRESH_DELAY_MS[topic] || REFRESH_DELAY_MS["*"];
        scheduleRefresh(el.getAttribute("data-fragment"), delay);
      }
    });
  }

  function refreshAll() {
    var reads = [];
    each("[data-fragment]", function (el) {
      reads.push(refresh(el.getAttribute("data-fragment")));
    });
    return Promise.all(reads);
  }

  function badgeKey(element) {
    return element.getAttribute("data-live-entity") + ":" + element.getAttribute("data-live-id");
  }

  function resyncBadges() {
    // Badges outside the sections (headings, admin lists): read them from the page anew.
    var outside = [];
    each("[data-live-entity][data-live-id]", function (el) {
      if (!el.closest("[data-fragment]")) outside.push(el);
    });
    if (!outside.length) return Promise.resolve();
    return fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var statuses = {};
        var page = new DOMParser().parseFromString(html, "text/html");
        each("[data-live-entity][data-live-id]", function (el) {
          statuses[badgeKey(el)] = el.textContent.trim();
        }, page);
        outside.forEach(function (el) {
          var status = statuses[badgeKey(el)];
          if (status) setBadge(el, status);
        });
      })
      .catch(function () {
        /* the next event says it again */
      });
  }

  function scheduleRefresh(name, delay) {
    if (refreshTimers[name]) return;
    refreshTimers[name] = setTimeout(function () {
      refreshTimers[name] = null;
      refresh(name);
    }, delay == null ? REFRESH_DELAY_MS["*"] : delay);
  }

  function isBeingEdited(element) {
    var active = document.activeElement;
    if (active && element.contains(active) && /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName)) {
      return true;
    }
    return element.querySelector("form[data-dirty]") !== null;
  }

  // Reads the section anew; the promise settles once it (and any read asked for
  // meanwhile) is in the page.
  function refresh(name) {
    var element = fragment(name);
    if (!element) return Promise.resolve();
    if (refreshing[name]) {
      refreshAgain[name] = true;
      return refreshing[name];
    }
    if (isBeingEdited(element)) {
      // Never replace what the operator is typing; say that it may be out of date.
      element.setAttribute("data-stale", "");
      scheduleRefresh(name, 2000);
      return Promise.resolve();
    }
    var url = new URL(window.location.href);
    url.hash = "";
    url.searchParams.set("fragment", name);
    refreshing[name] = fetch(url.toString(), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html", "X-Requested-With": "XMLHttpRequest" },
    })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.querySelector('[data-fragment="' + name + '"]');
        var current = fragment(name);
        if (!fresh || !current) return;
        if (isBeingEdited(current)) {
          current.setAttribute("data-stale", "");
          scheduleRefresh(name, 2000);
          return;
        }
        current.replaceWith(fresh);
        if (name === "run") showProgress(fresh);
      })
      .catch(function () {
        /* the next event or reconnect reads it again */
      })
      .then(function () {
        refreshing[name] = null;
        if (refreshAgain[name]) {
          refreshAgain[name] = false;
          return refresh(name);
        }
      });
    return refreshing[name];
  }

  document.addEventListener("input", function (event) {
    var form = event.target && event.target.closest && event.target.closest("form");
    if (form) form.setAttribute("data-dirty", "");
  });

  // --- formatting (as the server formats) ----------------------------------------------

  function formatTokens(value) {
    return Number(value || 0).toLocaleString("en-US");
  }

  function formatMoney(value) {
    if (value == null || value === "") return "—";
    var number = Number(value);
    if (number === 0) return "$0";
    if (Math.abs(number) >= 1) {
      return "$" + number.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    }
    var text = "$" + Math.abs(number).toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
    if (text === "$0") text = "<$0.000001";
    return number < 0 ? "-" + text : text;
  }

  // For the browser tests, which feed the page events of their own.
  window.statehouseLive = { handle: handle };

  connect();
})();
