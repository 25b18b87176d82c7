// ES module entry of django-ws.js for Node: import DjangoWebSocket from "django-ws".
import DjangoWebSocket from "./django-ws.js";

export { DjangoWebSocket };
export default DjangoWebSocket;
