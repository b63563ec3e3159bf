// Types of the Switchyard browser SDK (switchyard.js). Protocol: docs/events.md. Guide: docs/sdk.md.

/** The part of JsSIP the SDK uses (`import JsSIP from 'jssip'`, or vendor/jssip.js). */
export interface JsSIPLike {
  UA: new (config: Record<string, unknown>) => unknown;
  WebSocketInterface: new (url: string) => unknown;
  version?: string;
}

export interface ConnectOptions {
  /** ws:// or wss:// URL of Switchyard's `/v1/events`. */
  url: string;
  /** Session token from your backend (`POST /v1/users/{id}/session-tokens`). */
  token?: string;
  /**
   * Called for a token when none was given, and again whenever Switchyard refused the current one
   * (close 4001 `token_invalid` / 4002 `token_expired`) so the SDK can reconnect on its own.
   * Must resolve with a non-empty string; otherwise `token_unavailable` (connect() rejects before
   * the first connection; later the SDK retries with backoff).
   */
  getToken?: () => string | Promise<string>;
  /** The JsSIP library. Default: `globalThis.JsSIP`. Needed only to accept calls. */
  JsSIP?: JsSIPLike;
  /**
   * Reconnect after a lost channel (default true). Also makes the browser's `offline` event
   * count as a lost channel and its `online` event reconnect at once.
   */
  reconnect?: boolean;
  /** Reconnect backoff bounds (default 500 ms … 30 s, exponential with jitter). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Answer `busy` automatically to an invitation that arrives while this tab is in another call (default false). */
  busyWhenInCall?: boolean;
  /** ICE servers for the calls' RTCPeerConnection (default none: the node is reachable directly). */
  iceServers?: RTCIceServer[];
  /** Log to console.debug. */
  debug?: boolean;
  /** WebSocket constructor (tests, Node). Default: globalThis.WebSocket. */
  WebSocket?: typeof WebSocket;
}

/** A member as in `GET /v1/conferences/{name}/members`. */
export interface Member {
  member_id: number | string;
  user_id: string;
  caller_id_name?: string;
  node?: string;
  joined_at?: string;
  talking: boolean;
  muted: boolean;
  deaf: boolean;
  video: boolean;
  floor: boolean;
  [extra: string]: unknown;
}

export type MediaTarget = HTMLMediaElement | string | null | undefined;

export interface AcceptOptions {
  /** `audio` or `video`; default: the conference profile. */
  type?: 'audio' | 'video';
  /** Element (or CSS selector) for the remote video. */
  video_remote?: MediaTarget;
  /** Element (or CSS selector) for the remote audio (default: the remote video element). */
  audio_remote?: MediaTarget;
  /** Element (or CSS selector) for the local camera preview (muted). */
  video_local?: MediaTarget;
  /** Cap on the video this browser sends, in bits per second. */
  maxVideoBitrate?: number;
  /** camelCase aliases of the above. */
  videoRemote?: MediaTarget;
  audioRemote?: MediaTarget;
  videoLocal?: MediaTarget;
  /** getUserMedia constraints, replacing the ones derived from `type`. */
  mediaConstraints?: MediaStreamConstraints;
  /** ICE servers for this call. */
  iceServers?: RTCIceServer[];
  /** Extra JsSIP UA configuration (merged last). */
  uaConfig?: Record<string, unknown>;
}

export type CallState = 'ringing' | 'accepting' | 'connecting' | 'active' | 'ended';

/** Why a call ended (`callEnd.reason`). */
export type EndReason =
  | 'hangup' // this tab hung up
  | 'remote_hangup' // the node hung up without saying why
  | 'kicked'
  | 'uninvited'
  | 'ended' // the conference was ended
  | 'duration_exceeded'
  | 'node_down'
  | 'node_restarted'
  | 'node_removed'
  | 'idle_timeout'
  | 'failed' // SIP registration or call failed (see the `error` event)
  | 'media_error' // no camera/microphone
  | 'closed' // client.close()
  | 'declined'
  | 'busy'
  | 'answered_elsewhere'
  | 'cancelled'
  | (string & {});

export type ErrorCode =
  // sent by Switchyard (docs/events.md)
  | 'bad_message'
  | 'not_invited'
  | 'not_in_audience'
  | 'message_too_long'
  | 'message_empty'
  | 'rate_limited'
  | 'unavailable'
  // close codes
  | 'token_invalid'
  | 'token_expired'
  | 'user_disabled'
  | 'too_many_connections'
  | 'too_big'
  // raised by the SDK
  | 'token_unavailable'
  | 'connect_failed'
  | 'not_connected'
  | 'disconnected'
  | 'closed'
  | 'timeout'
  | 'bad_argument'
  | 'bad_state'
  | 'no_call'
  | 'jssip_missing'
  | 'media_denied'
  | 'sip_config'
  | 'sip_connect_failed'
  | 'sip_registration_failed'
  | 'sip_call_failed'
  | (string & {});

export declare class SwitchyardError extends Error {
  readonly code: ErrorCode;
  /** WebSocket close code, for errors that closed the channel. */
  readonly closeCode?: number;
  readonly conference?: string;
  readonly detail?: string;
  /** SIP status / JsSIP cause, for sip_* errors. */
  readonly status?: number;
  readonly sipCause?: string;
  constructor(code: ErrorCode, message: string, extra?: Record<string, unknown>);
}

export interface MessageEvent {
  conference: string;
  from: string;
  text: string;
  /** the sender's id for the message, if it gave one */
  id: string | null;
  messageId: string;
  at: string;
  /** sent by this user (any of its tabs) */
  self: boolean;
  call?: Call;
}

export interface ClientEvents {
  /** The channel is open (`welcome`); also after every reconnect. */
  connected: { userId: string; session: string; resumed: boolean; reconnected: boolean };
  disconnected: { code: number; reason: string; willReconnect: boolean; retryInMs?: number };
  /** Reconnected but events were lost: re-read your state from your backend. */
  resync: { userId: string };
  state: { state: Client['state'] };
  /** An incoming invitation: accept, decline or busy it. */
  call: Call;
  /** An invitation answered automatically with `busy` (busyWhenInCall). */
  missedCall: { call: Call; reason: 'busy' };
  /** An invitation stopped ringing: `cancelled`, `answered` (another tab), `declined`, `busy`, `ended`. */
  callCancelled: { call: Call; conference: string; reason: string };
  /** This tab answered (before media and SIP). */
  callAccept: { call: Call; conference: string; type: 'audio' | 'video' };
  /** The node answered: the call is up. */
  callStart: { call: Call; conference: string };
  /** The call is over. `duration` in whole seconds since callStart (0 if it never started). */
  callEnd: { call: Call; conference: string; reason: EndReason; duration: number; error: SwitchyardError | null };
  /** Someone (this user included: `self`) joined a conference. */
  in: { conference: string; member: Member; userId: string; self: boolean; call?: Call; at: string };
  /** Someone left a conference. */
  out: { conference: string; member: Member; userId: string; reason: string; self: boolean; call?: Call; at: string };
  memberUpdated: { conference: string; member: Member; self: boolean; call?: Call; at: string };
  talking: { conference: string; memberId: number | string; userId: string; talking: boolean; self: boolean; call?: Call; at: string };
  declined: { conference: string; userId: string; call?: Call; at: string };
  busy: { conference: string; userId: string; call?: Call; at: string };
  conferenceEnded: { conference: string; reason: string; call?: Call; at: string };
  message: MessageEvent;
  mute: { call: Call; muted: boolean };
  error: SwitchyardError;
  /** Every server event, raw (docs/events.md). */
  event: { type: string; seq: number; at: string; [field: string]: unknown };
}

export interface CallEvents {
  accept: { call: Call; conference: string; type: 'audio' | 'video' };
  start: { call: Call; conference: string };
  end: { reason: EndReason; duration: number; call?: Call; conference?: string; error?: SwitchyardError | null };
  cancelled: { call: Call; conference: string; reason: string };
  members: Member[];
  mute: { muted: boolean };
  remoteStream: { stream: MediaStream; track: MediaStreamTrack };
  error: SwitchyardError;
}

declare class Emitter<E> {
  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof E>(event: K, fn: (payload: E[K]) => void): () => void;
  once<K extends keyof E>(event: K, fn: (payload: E[K]) => void): () => void;
  off<K extends keyof E>(event: K, fn?: (payload: E[K]) => void): this;
}

export declare class Call extends Emitter<CallEvents> {
  readonly conference: string;
  readonly callerId: string | null;
  readonly message: string | null;
  readonly profile: 'audio' | 'video' | string;
  readonly node: string | null;
  readonly state: CallState;
  readonly muted: boolean;
  readonly startedAt: number | null;
  readonly endReason: EndReason | null;
  /** true once the node accepted the SIP REGISTER made with the invitation's credentials */
  readonly registered: boolean;
  readonly peerConnection: RTCPeerConnection | null;
  readonly localStream: MediaStream | null;
  readonly remoteStream: MediaStream | null;
  readonly members: Member[];
  /** whole seconds since callStart */
  readonly duration: number;
  /** the raw `invited` event */
  readonly invitation: Record<string, unknown>;
  accept(options?: AcceptOptions): Promise<void>;
  decline(): void;
  busy(): void;
  hangup(): void;
  mute(muted?: boolean): void;
  unmute(): void;
  sendMessage(text: string): Promise<MessageEvent>;
  setMaxVideoBitrate(bitsPerSecond: number | null): Promise<void>;
}

export declare class Client extends Emitter<ClientEvents> {
  constructor(options: ConnectOptions);
  /** Resolves after the first `welcome`. */
  readonly ready: Promise<Client>;
  readonly userId: string | null;
  readonly session: string | null;
  readonly state: 'connecting' | 'open' | 'reconnecting' | 'closed';
  readonly maxMessageChars: number;
  readonly lastSeq: number | null;
  /** Answer `busy` automatically to invitations arriving during a call (settable). */
  busyWhenInCall: boolean;
  readonly activeCall: Call | null;
  readonly ringing: Call[];
  getCall(conference: string): Call | null;
  hangup(): void;
  mute(muted?: boolean): void;
  /** Sends to `conference`, or to the active call's conference. Resolves with the delivered message. */
  sendMessage(text: string, options?: { conference?: string; timeoutMs?: number }): Promise<MessageEvent>;
  close(): void;
}

export declare function connect(options: ConnectOptions): Promise<Client>;
/** Unicode scalar values in a string (what `max_message_chars` counts). */
export declare function countChars(text: string): number;
/** Sets b=AS/b=TIAS on the video sections of an SDP. */
export declare function limitVideoBandwidth(sdp: string, bitsPerSecond: number): string;

export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  TOO_BIG: 1009;
  INTERNAL_ERROR: 1011;
  BAD_HELLO: 4000;
  TOKEN_INVALID: 4001;
  TOKEN_EXPIRED: 4002;
  USER_DISABLED: 4003;
  HEARTBEAT_TIMEOUT: 4008;
  TOO_MANY_CONNECTIONS: 4009;
  TOO_SLOW: 4010;
  RATE_LIMITED: 4029;
}>;
export declare const VERSION: string;

declare const Switchyard: {
  connect: typeof connect;
  Client: typeof Client;
  Call: typeof Call;
  CloseCode: typeof CloseCode;
  SwitchyardError: typeof SwitchyardError;
  countChars: typeof countChars;
  limitVideoBandwidth: typeof limitVideoBandwidth;
  VERSION: string;
};
export default Switchyard;
