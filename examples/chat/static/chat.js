// The room page: sends messages with XSRF-protected POSTs (or over the socket) and receives
// them over WebSocket, long polling or server-sent events. Every path uses message ids (the
// hub's ids: "12" or "1700000000000-3") as cursors, so nothing is shown twice or lost
// across reconnects.
"use strict";

(function () {
  const room = document.getElementById("room");
  const inbox = document.getElementById("inbox");
  const form = document.getElementById("composer");
  const input = document.getElementById("body");
  const errorBox = document.getElementById("error");
  let cursor = room.dataset.cursor;
  let socket = null;

  // ids compare as pairs of numbers: "12" is [12, 0], "1700000000000-3" is [1700000000000, 3]
  function idKey(id) {
    const [first, second] = String(id).split("-");
    return [Number(first), Number(second || 0)];
  }

  function isNewer(id, than) {
    const [a, b] = idKey(id);
    const [c, d] = idKey(than);
    return a > c || (a === c && b > d);
  }

  function xsrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function show(messages) {
    for (const message of messages) {
      if (!isNewer(message.id, cursor)) continue;
      cursor = message.id;
      const item = document.createElement("li");
      item.className = "message";
      item.id = "m" + message.id;
      const from = document.createElement("b");
      from.className = "from";
      from.textContent = message.from;
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = message.body; // text, never markup
      item.append(from, " ", body);
      inbox.append(item);
    }
    inbox.scrollTop = inbox.scrollHeight;
  }

  async function post(url, fields) {
    const body = new URLSearchParams(fields);
    body.set("_xsrf", xsrfToken());
    return fetch(url, { method: "POST", body, credentials: "same-origin" });
  }

  async function poll() {
    for (;;) {
      try {
        const response = await post("/a/message/updates", { cursor: String(cursor) });
        if (response.ok) {
          show((await response.json()).messages);
          continue;
        }
      } catch (error) {
        // the server went away: wait a little before asking again
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/chatsocket?cursor=" + cursor);
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (data.error) showError(data.error);
      else show(data.messages);
    };
    socket.onclose = () => {
      socket = null;
      setTimeout(connect, 1000);
    };
  }

  function listen() {
    // EventSource reconnects by itself and sends Last-Event-ID; the first request passes the
    // page's cursor. When the server refuses (not an event stream), start again later.
    const source = new EventSource("/a/message/events?lastEventId=" + encodeURIComponent(cursor));
    source.onmessage = (event) => show([JSON.parse(event.data)]);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(listen, 1000);
    };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value;
    showError("");
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ body: text }));
      input.value = "";
      return;
    }
    const response = await post("/a/message/new", { body: text });
    if (response.ok) {
      input.value = "";
    } else {
      const data = await response.json().catch(() => ({}));
      showError(data.error || "The message was not sent.");
    }
  });

  if (room.dataset.transport === "websocket") connect();
  else if (room.dataset.transport === "sse") listen();
  else poll();
})();
