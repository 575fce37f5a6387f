// A minimal React app on the real useStream hook (@langchain/langgraph-sdk/react).
// The query string says where the API is and what to do:
//   ?api=<API URL>&key=<API key>&graph=chat|approval|pipeline[&thread=<thread id>]
// The thread id is written back into the address, so a reload stays on the thread
// (and, with reconnectOnMount, re-joins the run that was streaming).
import { useStream } from "@langchain/langgraph-sdk/react";
import { useState } from "react";
import { createRoot } from "react-dom/client";

const query = new URLSearchParams(window.location.search);
const API_URL = query.get("api");
const API_KEY = query.get("key");
const GRAPH = query.get("graph") ?? "chat";

function rememberThread(threadId) {
  const url = new URL(window.location.href);
  url.searchParams.set("thread", threadId);
  window.history.replaceState(null, "", url);
}

function text(content) {
  if (typeof content === "string") return content;
  return (content ?? []).map((part) => part.text ?? "").join("");
}

function Chat({ stream }) {
  const [draft, setDraft] = useState("Where is my order 1042?");
  const submit = (event) => {
    event.preventDefault();
    stream.submit({ messages: [{ type: "human", content: draft }] });
  };
  return (
    <>
      <form onSubmit={submit}>
        <label htmlFor="message">Message</label>
        <input id="message" value={draft} onChange={(event) => setDraft(event.target.value)} />
        <button type="submit">Send</button>
      </form>
      <ol id="messages">
        {stream.messages.map((message, index) => (
          <li key={message.id ?? index} data-type={message.type}>
            {text(message.content)}
            {(message.tool_calls ?? []).map((call) => (
              <span key={call.id} data-tool-call={call.name}>
                {` calls ${call.name}`}
              </span>
            ))}
          </li>
        ))}
      </ol>
    </>
  );
}

function Approval({ stream }) {
  const interrupt = stream.interrupt;
  return (
    <>
      <button type="button" id="start" onClick={() => stream.submit({ request: "a refund" })}>
        Ask for a refund
      </button>
      {interrupt ? (
        <section id="interrupt">
          <p id="question">{interrupt.value?.question}</p>
          <p id="draft">{interrupt.value?.draft}</p>
          <button
            type="button"
            id="approve"
            onClick={() =>
              stream.submit(undefined, {
                command: { resume: { action: "approve", note: "approved in the browser" } },
              })
            }
          >
            Approve
          </button>
        </section>
      ) : null}
      <p id="final">{stream.values?.final}</p>
      <p id="note">{stream.values?.reviewer_note}</p>
    </>
  );
}

function Pipeline({ stream }) {
  const steps = Number(query.get("steps") ?? 12);
  const delay = Number(query.get("delay") ?? 0.4);
  return (
    <>
      <button
        type="button"
        id="start"
        onClick={() => stream.submit({ steps, delay_s: delay }, { streamResumable: true })}
      >
        Run the pipeline
      </button>
      <p id="steps">{(stream.values?.completed_steps ?? []).join(",")}</p>
    </>
  );
}

function App() {
  const [threadId, setThreadId] = useState(query.get("thread"));
  const stream = useStream({
    apiUrl: API_URL,
    apiKey: API_KEY,
    assistantId: GRAPH,
    threadId,
    onThreadId: (id) => {
      setThreadId(id);
      rememberThread(id);
    },
    reconnectOnMount: GRAPH === "pipeline",
    fetchStateHistory: false,
  });
  const View = { chat: Chat, approval: Approval, pipeline: Pipeline }[GRAPH];
  return (
    <>
      <h1>useStream: {GRAPH}</h1>
      <p id="status" data-loading={String(stream.isLoading)}>
        {stream.isLoading ? "streaming" : "idle"}
      </p>
      <p id="thread">{threadId ?? ""}</p>
      <p id="error" role="alert">
        {stream.error ? String(stream.error.message ?? stream.error) : ""}
      </p>
      <View stream={stream} />
    </>
  );
}

createRoot(document.getElementById("root")).render(<App />);
