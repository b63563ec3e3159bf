// Types of comet-video-api.js (CppComet names over the Switchyard SDK).
import type { AcceptOptions, Call, Client, ClientEvents, ConnectOptions, MessageEvent } from './switchyard';

export interface CometCallEvent {
  callerId: string | null;
  conference: string;
  message: string | null;
  profile: string;
  call: Call;
}

export interface CometStartOptions extends ConnectOptions {
  onCall?: (e: CometCallEvent) => void;
  onCallAccept?: (e: ClientEvents['callAccept']) => void;
  onCallStart?: (e: ClientEvents['callStart']) => void;
  onIn?: (e: ClientEvents['in']) => void;
  onOut?: (e: ClientEvents['out']) => void;
  onCallEnd?: (e: ClientEvents['callEnd']) => void;
  onTalking?: (e: ClientEvents['talking']) => void;
  onMessage?: (e: ClientEvents['message']) => void;
  onCallCancelled?: (e: ClientEvents['callCancelled']) => void;
  onDeclined?: (e: ClientEvents['declined']) => void;
  onBusy?: (e: ClientEvents['busy']) => void;
  onError?: (e: ClientEvents['error']) => void;
}

export interface CometVideoApi {
  readonly client: Client | null;
  start(options: CometStartOptions): Promise<Client>;
  acceptCall(options?: AcceptOptions): Promise<void>;
  declineCall(): void;
  busyCall(): void;
  hangup(): void;
  mute(muted?: boolean): void;
  sendMessage(text: string): Promise<MessageEvent>;
  stop(): void;
}

export declare function createCometVideoApi(): CometVideoApi;
export declare const cometVideoApi: CometVideoApi;
export default cometVideoApi;
