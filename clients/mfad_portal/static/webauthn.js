// mfad portal: passkeys (with page.js, the only scripts the portal serves). Buttons marked data-webauthn="create" or
// "get" ask the portal for WebAuthn options (data-begin), run the browser's ceremony and send the
// credential's JSON back (data-finish); the answer says where to go next, or what went wrong.
(function () {
  "use strict";
  if (!window.PublicKeyCredential) return;  // the buttons stay hidden; the page says passkeys need support
  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    var bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function withIds(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, {id: toBytes(c.id)}); });
  }
  // Fallbacks for browsers without parseCreationOptionsFromJSON / parseRequestOptionsFromJSON / toJSON.
  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    return Object.assign({}, json, {challenge: toBytes(json.challenge),
      user: Object.assign({}, json.user, {id: toBytes(json.user.id)}), excludeCredentials: withIds(json.excludeCredentials)});
  }
  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    return Object.assign({}, json, {challenge: toBytes(json.challenge), allowCredentials: withIds(json.allowCredentials)});
  }
  function credentialJSON(c) {
    if (typeof c.toJSON === "function") return c.toJSON();
    var r = c.response, response = {clientDataJSON: toB64url(r.clientDataJSON)};
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return {id: c.id, rawId: toB64url(c.rawId), type: c.type, response: response,
            authenticatorAttachment: c.authenticatorAttachment || undefined,
            clientExtensionResults: c.getClientExtensionResults()};
  }
  async function post(url, body) {
    var reply = await fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"content-type": "application/json", "x-csrf-token": csrf}, body: JSON.stringify(body)});
    var answer = {};
    try { answer = await reply.json(); } catch (e) { answer = {}; }
    if (!reply.ok) {
      var err = new Error(answer.error || reply.statusText);
      err.redirect = answer.redirect;
      throw err;
    }
    return answer;
  }
  function say(text) {
    var box = document.getElementById("error");
    box.textContent = "";
    box.textContent = text;
  }
  function confirmed(dialogId) {
    if (!dialogId) return Promise.resolve(true);
    var dialog = document.getElementById(dialogId);
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function once() {
        dialog.removeEventListener("close", once);
        resolve(dialog.returnValue === "ok");
      });
      dialog.showModal();
    });
  }
  async function ceremony(button) {
    var kind = button.dataset.webauthn;
    var body = {method: button.dataset.method || "passkey", device_id: button.dataset.device || ""};
    if (button.dataset.name) body.name = document.getElementById(button.dataset.name).value;
    // data-form: that form's fields go along (the approval and the number chosen on Approve sign-in).
    if (button.dataset.form) new FormData(document.getElementById(button.dataset.form)).forEach(function (v, k) { body[k] = v; });
    var remember = document.getElementById("remember");
    if (!(await confirmed(button.dataset.confirm))) return;
    button.disabled = true;
    try {
      var begun = await post(button.dataset.begin, body);
      var credential = kind === "create"
        ? await navigator.credentials.create({publicKey: creationOptions(begun.options)})
        : await navigator.credentials.get({publicKey: requestOptions(begun.options)});
      var done = await post(button.dataset.finish, {method: body.method, credential: credentialJSON(credential),
                                                   remember: !!(remember && remember.checked)});
      window.location.assign(done.redirect);
    } catch (e) {
      if (e.redirect) { window.location.assign(e.redirect); return; }
      say(e.name === "NotAllowedError" || e.name === "AbortError" || e.name === "InvalidStateError"
          ? button.dataset.cancelled || document.documentElement.dataset.cancelled : e.message);
    } finally {
      button.disabled = false;
    }
  }
  document.querySelectorAll("[data-webauthn]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { ceremony(button); });
  });
})();
