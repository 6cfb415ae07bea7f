"""How ``get`` shows a download: a bar on the terminal or an ipywidgets bar in a notebook (the
:mod:`.views` family), and
the ``--select`` pickers (a numbered prompt in a terminal, dropdowns in a notebook).

The download itself is a :class:`~lms_jupyter.models.downloads.DownloadJob` on its own
thread; :func:`run_download` polls it to draw progress and turns Ctrl+C into a pause
(the ``.part`` files stay, and the same command resumes them).
"""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Callable

from lms_jupyter.cli.listing import human_duration
from lms_jupyter.kernel.progress.views import TerminalView, WidgetView
from lms_jupyter.models.download_plan import DownloadPlan
from lms_jupyter.models.downloads import COMPLETED, FAILED, DownloadJob
from lms_jupyter.models.hub import DownloadError, human_size


class DownloadPaused(Exception):
    """The user stopped a download with Ctrl+C; it can be resumed."""

    def __init__(self, job: DownloadJob):
        super().__init__("paused")
        self.job = job


def run_download(job: DownloadJob, view, poll: float = 0.1) -> DownloadJob:
    """Run ``job`` on its thread, drawing ``view`` until it ends; Ctrl+C pauses it."""
    job.start()
    try:
        while not job.wait(poll):
            view.update(job.downloaded_bytes, job.total_bytes, job.bytes_per_second)
    except KeyboardInterrupt:
        job.pause(wait=30.0)
        view.fail(
            f"Download paused at {human_size(job.downloaded_bytes)} of "
            f"{human_size(job.total_bytes)}; run the same command again to resume."
        )
        raise DownloadPaused(job) from None
    view.update(job.downloaded_bytes, job.total_bytes, 0.0)
    if job.status == FAILED:
        view.fail(None)
        raise job.error or DownloadError("Download failed.")
    return job


def progress_text(done: int, total: int, speed: float) -> str:
    pct = 100.0 * done / total if total else 100.0
    text = f"{pct:.2f}% | {human_size(done)} of {human_size(total)}"
    if speed > 0:
        left = max(0, total - done) / speed
        text += f" | {human_size(speed)}/s | ETA {human_duration(left)}"
    return text


class TerminalDownloadProgress(TerminalView):
    """A download's bar on the terminal: percentage, bytes, speed and ETA."""

    def update(self, done: int, total: int, speed: float) -> None:
        self.show(
            done / total if total else 1.0,
            progress_text(done, total, speed),
            force=bool(total) and done >= total,
        )


class WidgetDownloadProgress(WidgetView):
    """A download's ipywidgets bar with bytes, speed and ETA; the result line is also
    printed, so it stays in the cell's text output."""

    def update(self, done: int, total: int, speed: float) -> None:
        self.show(
            done / total if total else 1.0,
            f"{self.title}: {progress_text(done, total, speed)}",
            force=bool(total) and done >= total,
        )

    def finish(self, line: str) -> None:  # type: ignore[override]
        super().finish(line)
        print(line, flush=True)


def variant_label(plan: DownloadPlan, variant) -> str:
    mark = "  (default)" if variant is plan.default else ""
    shards = f", {len(variant.files)} files" if len(variant.files) > 1 else ""
    return f"{variant.quantization}  {human_size(variant.size)}{shards}{mark}"


def hit_label(hit) -> str:
    return f"{hit.repo_id}  ({hit.downloads} downloads, {hit.likes} likes)"


def prompt_choice(
    title: str, options: list[str], default: int, ask: Callable[[str], str] = input, out=None
) -> int:
    """A numbered list and a prompt; Enter or end of input takes the default."""
    out = out or sys.stdout
    print(title, file=out)
    for i, option in enumerate(options, 1):
        print(f"  {i}) {option}", file=out)
    while True:
        try:
            answer = ask(f"Choose 1-{len(options)} [{default + 1}]: ").strip()
        except EOFError:
            print(file=out)
            return default
        if not answer:
            return default
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            return int(answer) - 1
        print(f"Type a number from 1 to {len(options)}.", file=out, flush=True)


def prompt_plan(
    plan: DownloadPlan,
    resolve_repo: Callable[[str], DownloadPlan],
    ask: Callable[[str], str] = input,
) -> DownloadPlan:
    """``--select`` in a terminal: the repository (after a search), then the variant."""
    if len(plan.hits) > 1:
        hits = plan.hits[:10]
        current = next((i for i, h in enumerate(hits) if h.repo_id == plan.repo_id), 0)
        chosen = prompt_choice(
            "Repositories on the Hugging Face Hub:", [hit_label(h) for h in hits], current, ask
        )
        if hits[chosen].repo_id != plan.repo_id:
            plan = resolve_repo(hits[chosen].repo_id)
    index = plan.variants.index(plan.variant)
    chosen = prompt_choice(
        f"Variants of {plan.repo_id}:", [variant_label(plan, v) for v in plan.variants], index, ask
    )
    return plan.with_variant(plan.variants[chosen])


class DownloadPicker:
    """``--select`` in a notebook: pick the repository and the variant, then Download.

    The download runs on its own thread with a progress bar, so the kernel stays free
    (other cells run meanwhile). ``job`` is the running or last download.
    """

    def __init__(
        self,
        plan: DownloadPlan,
        resolve_repo: Callable[[str], DownloadPlan],
        load_hint: str = "%lms load <model>",
    ):
        import ipywidgets as widgets

        self.plan = plan
        self.resolve_repo = resolve_repo
        self.load_hint = load_hint
        self.job: DownloadJob | None = None
        self.done = threading.Event()
        hits = plan.hits[:10] or []
        options = [(hit_label(h), h.repo_id) for h in hits] or [(plan.repo_id, plan.repo_id)]
        self.repo = widgets.Dropdown(
            options=options,
            value=plan.repo_id,
            description="Repository",
            layout=widgets.Layout(width="34em"),
        )
        self.variant = widgets.Dropdown(description="Variant", layout=widgets.Layout(width="34em"))
        self.button = widgets.Button(
            description="Download", icon="download", button_style="primary"
        )
        self.bar = widgets.IntProgress(
            value=0, min=0, max=1000, layout=widgets.Layout(width="18em", visibility="hidden")
        )
        self.message = widgets.HTML("")
        self._fill_variants(plan)
        self.repo.observe(self._repo_changed, names="value")
        self.button.on_click(lambda _button: self.start())
        self.widget = widgets.VBox(
            [self.repo, self.variant, widgets.HBox([self.button, self.bar]), self.message]
        )

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _fill_variants(self, plan: DownloadPlan) -> None:
        self.plan = plan
        self.variant.options = [(variant_label(plan, v), i) for i, v in enumerate(plan.variants)]
        self.variant.value = plan.variants.index(plan.variant)

    def _repo_changed(self, change) -> None:
        repo_id = change["new"]
        if repo_id == self.plan.repo_id:
            return
        self.button.disabled = True
        self.message.value = html.escape(f"Reading {repo_id}…")
        try:
            plan = self.resolve_repo(repo_id)
        except DownloadError as exc:
            self.message.value = html.escape(exc.message)
            return
        plan.hits = self.plan.hits
        self._fill_variants(plan)
        self.button.disabled = False
        self.message.value = ""

    def start(self) -> DownloadJob | None:
        plan = self.plan.with_variant(self.plan.variants[self.variant.value])
        hint = self.load_hint.replace("<model>", plan.model_key)
        if plan.already_downloaded:
            self.message.value = html.escape(f"Model already downloaded. To use, run: {hint}")
            self.done.set()
            return None
        self.done.clear()
        self.button.disabled = self.repo.disabled = self.variant.disabled = True
        self.bar.layout.visibility = "visible"
        self.bar.bar_style = ""
        self.job = DownloadJob(plan).start()
        threading.Thread(
            target=self._watch, args=(self.job, hint), daemon=True, name="lms-download-view"
        ).start()
        return self.job

    def _watch(self, job: DownloadJob, hint: str) -> None:
        while not job.wait(0.2):
            self._show(job)
        self._show(job)
        if job.status == COMPLETED:
            self.bar.bar_style = "success"
            self.message.value = html.escape(f"Download completed. To use, run: {hint}")
        else:
            self.bar.bar_style = "danger"
            self.message.value = html.escape(
                job.error.message if job.error else f"Download {job.status}."
            )
        self.button.disabled = self.repo.disabled = self.variant.disabled = False
        self.done.set()

    def _show(self, job: DownloadJob) -> None:
        total = job.total_bytes or 1
        self.bar.value = int(1000 * job.downloaded_bytes / total)
        self.message.value = html.escape(
            progress_text(job.downloaded_bytes, job.total_bytes, job.bytes_per_second)
        )
