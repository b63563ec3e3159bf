// cometVideoApi: CppComet's browser call API names on top of the Switchyard SDK, for pages
// migrating from CppComet. New code should use switchyard.js directly (docs/sdk.md has the
// name-by-name table). One incoming call at a time, as cometVideoApi had.
//
//   import { cometVideoApi } from './sdk/comet-video-api.js';
//   await cometVideoApi.start({
//     url, token, JsSIP,
//     onCall(e)   { cometVideoApi.acceptCall({ type: 'video', video_remote: remoteEl, video_local: localEl }); },
//     onCallEnd(e){ console.log(e.reason, e.duration); },
//   });

import { connect } from './switchyard.js';

const CALLBACKS = {
  onCall: 'call',
  onCallAccept: 'callAccept',
  onCallStart: 'callStart',
  onIn: 'in',
  onOut: 'out',
  onCallEnd: 'callEnd',
  onTalking: 'talking',
  onMessage: 'message',
  onCallCancelled: 'callCancelled',
  onDeclined: 'declined',
  onBusy: 'busy',
  onError: 'error',
};

/**
 * @returns {import('./comet-video-api').CometVideoApi}
 */
export function createCometVideoApi() {
  let client = null;
  /** the newest ringing invitation */
  let incoming = null;

  const ringing = () => {
    if (incoming && incoming.state === 'ringing') return incoming;
    return client?.ringing.at(-1) ?? null;
  };

  return {
    /** The underlying Switchyard client (null before start). */
    get client() {
      return client;
    },

    /**
     * Connects and installs the callbacks. Options: everything `connect()` takes, plus
     * `onCall`, `onCallAccept`, `onCallStart`, `onIn`, `onOut`, `onCallEnd` (and `onTalking`,
     * `onMessage`, `onCallCancelled`, `onDeclined`, `onBusy`, `onError`).
     */
    async start(options = {}) {
      if (client) throw new Error('cometVideoApi.start: already started; call stop() first');
      const connectOptions = {};
      const handlers = {};
      for (const [key, value] of Object.entries(options)) {
        if (key in CALLBACKS) handlers[key] = value;
        else connectOptions[key] = value;
      }
      client = await connect(connectOptions);
      client.on('call', (call) => {
        incoming = call;
      });
      for (const [key, fn] of Object.entries(handlers)) {
        if (typeof fn !== 'function') continue;
        const event = CALLBACKS[key];
        client.on(event, (payload) => {
          if (event === 'call') {
            fn({ callerId: payload.callerId, conference: payload.conference, message: payload.message, profile: payload.profile, call: payload });
          } else {
            fn(payload);
          }
        });
      }
      return client;
    },

    /** Answers the ringing call: `{type, video_remote, audio_remote, video_local, maxVideoBitrate}`. */
    acceptCall(options = {}) {
      const call = ringing();
      if (!call) return Promise.reject(new Error('cometVideoApi.acceptCall: no incoming call'));
      return call.accept(options);
    },

    /** Declines the ringing call. */
    declineCall() {
      ringing()?.decline();
    },

    /** Answers the ringing call with "busy". */
    busyCall() {
      ringing()?.busy();
    },

    /** Leaves the current call. */
    hangup() {
      client?.hangup();
    },

    /** Mutes (true, default) or unmutes the microphone. */
    mute(muted = true) {
      client?.mute(muted);
    },

    /** Sends a text message to the current call's conference. */
    sendMessage(text) {
      if (!client) return Promise.reject(new Error('cometVideoApi.sendMessage: not started'));
      return client.sendMessage(text);
    },

    /** Hangs up and disconnects. */
    stop() {
      client?.close();
      client = null;
      incoming = null;
    },
  };
}

/** A ready instance, like CppComet's global `cometVideoApi` (but not a global). */
export const cometVideoApi = createCometVideoApi();
export default cometVideoApi;
