// The account page's "Notifications" section (API.md §10): which channels carry security
// alerts (`notify` on the profile), the phone that texts go to, and Web Push on this device.

import { call } from "../api.js";
import { describeError, h, messages, nextId, replace } from "../dom.js";
import { renderPhone } from "./account-phone.js";
import { renderDevicePush } from "./account-push.js";

const PROFILE = "/api/v1/users/profile";

const CHANNELS = [
  {key: "push", label: "Browser push", hint: "A notification in the browsers you turn it on in, below."},
  {key: "sms", label: "Text message (SMS)", hint: "A text to your verified phone number."},
  {key: "email", label: "Email", hint: "An email to your account's address."},
];

/** Fill `section` for `profile`; a server without §10 (no `notify`) gets the push block only. */
export function renderNotifications(section, profile) {
  const push = h("div", {class: "card notify-card", hidden: true});
  const parts = [h("h2", {id: "notify-h"}, "Notifications")];
  if (profile.notify) {
    const channels = channelsCard(profile);
    parts.push(
      h("p", {class: "hint notify-intro"}, "Gatehouse tells you at once when something happens to your "
        + "account: a sign-in from a new device, a password change or reset, a session ended "
        + "because its sign-in token was stolen, two-step verification turned off."),
      channels.el,
      renderPhone((updated) => channels.phoneChanged(updated), profile));
  }
  parts.push(push);
  replace(section, ...parts);
  section.hidden = !profile.notify;
  renderDevicePush(push).then((shown) => { if (shown) section.hidden = false; });
}

/** A switch per channel, saved on change: shown at once, put back if the server refuses. */
function channelsCard(profile) {
  const msg = messages();
  const confirmed = {...profile.notify}; // what the server last said
  const pending = {push: 0, sms: 0, email: 0};
  const smsNote = h("p", {class: "hint warn-text", hidden: true});
  const rows = CHANNELS.map((channel) => {
    const input = h("input", {type: "checkbox", role: "switch", class: "switch", id: nextId("sw"),
      checked: confirmed[channel.key] === true, "aria-describedby": `${channel.key}-sw-hint`});
    const state = h("span", {class: "switch-state", "aria-hidden": "true"});
    const show = () => { state.textContent = input.checked ? "On" : "Off"; };
    show();
    input.addEventListener("change", async () => {
      const wanted = input.checked;
      show();
      msg.clear();
      pending[channel.key] += 1;
      try {
        const updated = await call("PATCH", PROFILE, {notify: {[channel.key]: wanted}});
        confirmed[channel.key] = updated.notify[channel.key];
        msg.notice(`${channel.label} alerts are ${confirmed[channel.key] ? "on" : "off"}.`);
      } catch (error) {
        msg.error(`${channel.label} could not be turned ${wanted ? "on" : "off"}: ${describeError(error)}`);
      } finally {
        pending[channel.key] -= 1;
        if (!pending[channel.key]) input.checked = confirmed[channel.key];
        show();
        if (channel.key === "sms") noteSms();
      }
    });
    return h("div", {class: "switch-row"},
      h("div", {},
        h("label", {for: input.id}, channel.label),
        h("p", {class: "hint", id: `${channel.key}-sw-hint`}, channel.hint)),
      h("div", {class: "switch-box"}, state, input));
  });

  let phone = {phone: profile.phone, phone_verified: profile.phone_verified};
  function noteSms() {
    const unreachable = confirmed.sms && !(phone.phone && phone.phone_verified);
    smsNote.hidden = !unreachable;
    smsNote.textContent = unreachable
      ? "Texts go to a verified phone only: add your number below and verify it." : "";
  }
  noteSms();
  return {
    el: h("div", {class: "card notify-card"},
      h("h3", {id: "channels-h"}, "Send security alerts by"),
      h("div", {role: "group", "aria-labelledby": "channels-h"}, rows),
      smsNote,
      msg.el),
    phoneChanged(updated) {
      phone = updated;
      noteSms();
    },
  };
}
