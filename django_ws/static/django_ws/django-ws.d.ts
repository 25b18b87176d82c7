// Type declarations of django-ws.js (docs/client.rst; the envelope of docs/protocol.rst, "Positions and recovery").

/** What `shouldReconnect` is told besides the close event. */
export interface ReconnectInfo {
  /** The socket closed before it ever opened: a refused handshake (401, 403, 404...) or no server there. */
  refused: boolean;
  /** Failed attempts in a row so far (0 after an open). */
  attempts: number;
}

export interface DjangoWebSocketOptions {
  /** Subprotocols to offer, as for `new WebSocket(url, protocols)`. */
  protocols?: string | string[];
  /** First reconnect delay in ms (default 500); doubles per failed attempt, with jitter. 0: at once. */
  baseDelay?: number;
  /** Longest reconnect delay in ms (default 30000). */
  maxDelay?: number;
  /** Most messages queued while disconnected (default 1000); `send` throws past it. 0: none. */
  maxQueue?: number;
  /** How long `request()` waits for its reply, in ms (default 30000); 0: no limit. */
  requestTimeout?: number;
  /**
   * A token, or a function returning one (or a Promise of one), called before every connect, and
   * ahead of the token's expiry, whose result is sent over the open connection as {"dws_token": token}.
   */
  token?: string | (() => string | Promise<string>);
  /** Where the token travels: "protocol" (default) or "query". */
  tokenIn?: "protocol" | "query";
  /** The query parameter of `tokenIn: "query"` (default "access_token"). */
  tokenParam?: string;
  /** Ask for positions and recover group messages missed while disconnected (default true). */
  recover?: boolean;
  /** The WebSocket class to use (default: the global WebSocket), e.g. `require("ws")` in Node < 22. */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  /**
   * Called after every close the page did not ask for: true reconnects, false stops, anything else
   * leaves it to the rules (stop when refused, or after 1003, 1008, 1009 or 4000-4999).
   */
  shouldReconnect?: (event: CloseEvent, info: ReconnectInfo) => boolean | undefined | void;
}

/** What `onmessage` receives: the application's data, never a position. */
export interface DjangoMessageEvent {
  type: "message";
  data: string | ArrayBuffer;
  target?: WebSocket;
}

/** A token function's failure, or a missing WebSocket class. */
export interface DjangoErrorEvent {
  type: "error";
  error: unknown;
}

/** What each event's listeners (and its on* property) receive. */
export interface DjangoWebSocketEventMap {
  open: Event;
  message: DjangoMessageEvent | MessageEvent;
  json: any;
  resync: string;
  close: CloseEvent;
  error: Event | DjangoErrorEvent;
}

export interface RequestOptions {
  /** This request's timeout in ms, instead of the `requestTimeout` option. */
  timeout?: number;
}

/** One person in a group's presence: the info their handler gave, and how many connections they have. */
export interface PresenceEntry {
  info: { [key: string]: unknown };
  connections: number;
}

/** The people in a group the handler shares with this client (`self.send_presence`, docs/presence.rst). */
export interface DjangoPresence {
  readonly group: string;
  /** User key -> entry: the latest snapshot with the changes since applied. */
  readonly users: { [userKey: string]: PresenceEntry };
  /** A person arrived, or has new info (also for each person new in a snapshot). */
  onjoin: ((userKey: string, info: { [key: string]: unknown }) => void) | null;
  /** A person's last connection left. */
  onleave: ((userKey: string) => void) | null;
  /** A snapshot arrived (at the handler's first send_presence, and after a reconnect). */
  onsync: ((users: { [userKey: string]: PresenceEntry }) => void) | null;
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
  /** True once the client has given up for good: closed by the page, refused, or a close it does not come back from. */
  readonly stopped: boolean;
  /** Resolved with the open event once the socket is open (again after a close); rejected if the client stops first. */
  readonly opened: Promise<Event>;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: DjangoMessageEvent | MessageEvent) => void) | null;
  onjson: ((data: any) => void) | null;
  /** The server could not replay what `group` was sent while disconnected: reload its state. */
  onresync: ((group: string) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event | DjangoErrorEvent) => void) | null;
  addEventListener<K extends keyof DjangoWebSocketEventMap>(
    type: K, listener: (event: DjangoWebSocketEventMap[K]) => void, options?: { once?: boolean }): void;
  removeEventListener<K extends keyof DjangoWebSocketEventMap>(
    type: K, listener: (event: DjangoWebSocketEventMap[K]) => void): void;
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void;
  sendJSON(data: unknown): void;
  /** Send `data` with a request id; the Promise resolves with the handler's `@on_type` method's return value. */
  request<T = any>(data: { type: string; [key: string]: unknown }, options?: RequestOptions): Promise<T>;
  /** The presence of `group` as the handler sends it (made at the first call; the same object after). */
  presence(group: string): DjangoPresence;
  close(code?: number, reason?: string): void;
  nextDelay(): number;
}

export default DjangoWebSocket;
