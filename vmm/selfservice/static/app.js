// Live progress of a job page, through server-sent events. Without it the
// page still shows the job as it was when loaded.
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("job");
  if (!el || el.dataset.finished === "true") return;
  const es = new EventSource("/jobs/" + encodeURIComponent(el.dataset.job) + "/events");
  es.onmessage = (e) => {
    const j = JSON.parse(e.data);
    document.getElementById("job-state").textContent = j.state;
    document.getElementById("job-progress").value = j.percent;
    const ul = document.getElementById("job-steps");
    ul.replaceChildren(...(j.steps || []).map((s) => { const li = document.createElement("li"); li.textContent = s; return li; }));
    document.getElementById("job-error").textContent = j.error || "";
    if (j.finished) es.close();
  };
  es.onerror = () => es.close();
});
