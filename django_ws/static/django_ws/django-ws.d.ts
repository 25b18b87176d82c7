// Type declarations of django-ws.js (the client of docs/protocol.rst, "Positions and recovery").

export interface DjangoWebSocketOptions {
  /** Subprotocols to offer, as for `new WebSocket(url, protocols)`. */
  protocols?: string | string[];
  /** First reconnect delay in ms (default 500); doubles per failed attempt, with jitter. */
  baseDelay?: number;
  /** Longest reconnect delay in ms (default 30000). */
  maxDelay?: number;
  /** Most messages queued while disconnected (default 1000); `send` throws past it. */
  maxQueue?: number;
  /** A token, or a function returning one (or a Promise of one), called before every connect. */
  token?: string | (() => string | Promise<string>);
  /** Where the token travels: "protocol" (default) or "query". */
  tokenIn?: "protocol" | "query";
  /** The query parameter of `tokenIn: "query"` (default "access_token"). */
  tokenParam?: string;
  /** Ask for positions and recover group messages missed while disconnected (default true). */
  recover?: boolean;
  /** The WebSocket class to use (default: the global WebSocket), e.g. `require("ws")` in Node < 22. */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

/** What `onmessage` receives: the application's data, never a position. */
export interface DjangoMessageEvent {
  type: "message";
  data: string | ArrayBuffer;
  target?: WebSocket;
}

export declare class DjangoWebSocket {
  constructor(url: string, options?: DjangoWebSocketOptions);
  readonly url: string;
  readonly readyState: number;
  /** The underlying WebSocket of the current attempt. */
  ws: WebSocket | null;
  /** group -> [epoch, offset]: the last position seen in each group with history. */
  positions: Record<string, [string, number]>;
  closedByUser: boolean;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: DjangoMessageEvent | MessageEvent) => void) | null;
  onjson: ((data: any) => void) | null;
  /** The server could not replay what `group` was sent while disconnected: reload its state. */
  onresync: ((group: string) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event | { type: "error"; error: unknown }) => void) | null;
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void;
  sendJSON(data: unknown): void;
  close(code?: number, reason?: string): void;
  nextDelay(): number;
}

export default DjangoWebSocket;
