"""Continuous batching: a loaded model serves ``parallel`` requests at once, in one context.

LM Studio (and llama.cpp's server) give each model several *slots*. Here a slot is one
sequence id of the model's single llama context, whose KV cache is unified: the slots
share ``context_length`` cells, so ``parallel: 4`` costs no more KV memory than 1. One
worker thread runs :class:`Scheduler`; each step is one ``llama_decode`` holding the next
token of every generating slot plus, in the room left, a chunk of a newly arrived
prompt (at most ``PREFILL_CHUNK`` tokens while others generate, so running streams stall
for one chunk, not for a whole prompt). Each slot samples with its own chain
(:mod:`.sampling`) and turns tokens into text with its own :class:`~.generation.TokenText`
(stop strings, ``max_tokens``, the context limit), exactly as one request alone would.

**Prompt cache per conversation.** A slot keeps its sequence when its request ends. A new
request goes to the free slot that its prompt continues (the longest common prefix, at
least half of what the slot holds), else to an empty slot, else to the least recently used
one; the longest prefix any slot (busy or not) shares with the prompt is reused, copied
into the chosen slot with ``llama_memory_seq_cp`` when it lives elsewhere (a unified cache
shares those cells, it does not duplicate them). Only the rest is evaluated; the reused
count is reported as ``cached_tokens``.

**The shared cache filling up** is handled when llama.cpp says so (``llama_decode``
returns 1 and changes nothing): idle slots' caches go first (least recently used first),
then prompt chunks wait for room, then the generating request holding the most cells
stops with ``contextLengthReached``.

Requests beyond the free slots wait in arrival order. Jobs that need the whole model run
between steps: *inline* ones (embeddings on a chat model use their own context) right
away, *exclusive* ones (speculative decoding, lending the model as a draft, both through
llama-cpp-python's high-level ``Llama`` on sequence 0) once every slot is idle, with the
KV cache cleared before and after.

(One module on purpose: the queue, the slots and the step loop share one lock and the
state of one thread.)
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import logging
import threading
import time

from lms_jupyter.engine.events import STOP_CONTEXT, STOP_EOS, STOP_USER, Failed, Finished, Started
from lms_jupyter.engine.instance import InstanceStatus, JobKind
from lms_jupyter.engine.local import llama
from lms_jupyter.engine.local.generation import TokenText, check_prompt
from lms_jupyter.engine.local.sampling import Candidates, SlotSampler
from lms_jupyter.engine.request import GenerationRequest
from lms_jupyter.errors import APIError, model_unloaded, queue_full

log = logging.getLogger(__name__)

STATUS_IDLE = InstanceStatus.IDLE
STATUS_PROMPT = InstanceStatus.PROCESSING_PROMPT
STATUS_GENERATING = InstanceStatus.GENERATING
STATUS_EMBEDDING = InstanceStatus.EMBEDDING

PREFILL_CHUNK = 256  # prompt tokens per step while other slots are generating
ABORT_MIN_TOKENS = 32  # arm the abort callback only for prompt chunks at least this long
STOP = object()  # queued by close(): stop once the jobs before it are done


class SlotJob:
    """A generation request: waits for a slot, then runs in it."""

    mode = JobKind.SLOT

    def __init__(self, model, request: GenerationRequest, channel):
        self.model, self.request, self.channel = model, request, channel

    def emit(self, event) -> None:
        model = self.model
        if (
            isinstance(event, Finished)
            and event.stop_reason == STOP_USER
            and model.closed
            and not self.channel.cancelled_by_client
        ):
            event = Failed(model_unloaded(model.identifier, during=True))
        self.channel.put(event)

    def abandon(self) -> None:
        self.channel.put(Failed(model_unloaded(self.model.identifier)))
        self.channel.close()


class Slot:
    """One sequence of the shared context and the tokens its KV cells hold."""

    def __init__(self, seq: int):
        self.seq = seq
        self.kv: list[int] = []  # tokens at positions 0..len-1 of this sequence
        self.last_used = 0.0
        self.running: _Running | None = None


class _Running:
    """A request in a slot: prompt progress, sampler, text, timings."""

    def __init__(
        self,
        job: SlotJob,
        slot: Slot,
        tokens: list[int],
        cached: int,
        sampler: SlotSampler,
        text: TokenText,
        started_at: float,
    ):
        self.job, self.slot, self.tokens, self.cached = job, slot, tokens, cached
        self.sampler, self.text, self.started_at = sampler, text, started_at
        self.next_token: int | None = None  # sampled, to be decoded next step
        self.first_token_at: float | None = None
        self.stalled = False  # its prompt waits for room in the KV cache
        self.out_index = -1  # batch index of its logits in the current step

    @property
    def prefilling(self) -> bool:
        return self.next_token is None


def common_prefix(cached: list[int], tokens) -> int:
    import numpy as np

    n = min(len(cached), len(tokens))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(cached[:n]) != np.asarray(tokens[:n]))
    return n if diff.size == 0 else int(diff[0])


class Scheduler:
    """The worker of one loaded model: its queue, its slots, its token loop.

    ``llm`` is None for an embedding model (no slots; its jobs run one by one)."""

    def __init__(self, model, llm, n_slots: int, n_batch: int):
        self.model = model
        self.llm = llm
        self.slots = [Slot(i) for i in range(n_slots if llm is not None else 0)]
        self.running: list[_Running] = []
        self._waiting: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._queued = 0
        self._cancelling = False
        self._job_status: str | None = None  # an inline or exclusive job's status
        self._thread: threading.Thread | None = None
        # wraps the sampling of one step, so an owner can deliver the tokens of every slot
        # at once (a model's worker sends them in one message)
        self.grouped_events: collections.abc.Callable[[], contextlib.AbstractContextManager] = (
            contextlib.nullcontext
        )
        self.stats = {"steps": 0, "decoded": 0, "sampled": 0}
        if llm is not None:
            self.ctx = llm._ctx.ctx
            self.n_vocab = llm.n_vocab()
            self.n_ctx = llm.n_ctx()
            self.vocab = llama.vocab(llm)
            self.memory = llama.KVMemory(llm)
            self.batch = llama.TokenBatch(max(n_batch, n_slots))
            self.candidates: Candidates | None = None  # made for the first grammar
            self._abort_events: list[threading.Event] = []
            self._abort = llama.PrefillAbort(
                llm, lambda: any(e.is_set() for e in self._abort_events)
            )

    # -- queue (any thread) -------------------------------------------------------------
    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def submit(self, job, limit: int = 0) -> None:
        """Queue ``job``; with ``limit``, a 503 (``queue_full``) once that many requests
        are waiting or running."""
        with self._cond:
            if limit and self._queued >= limit:
                raise queue_full(self.model.identifier, limit)
            self._queued += 1
            self._waiting.append(job)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._waiting.append(STOP)
            self._cond.notify()

    def cancel_all(self) -> None:
        """Unload: stop every running request and fail the waiting ones."""
        with self._cond:
            self._cancelling = True
            for running in list(self.running):
                running.job.channel.cancel_event.set()
            kept: collections.deque = collections.deque()
            while self._waiting:
                job = self._waiting.popleft()
                if job is STOP:
                    kept.append(job)
                    continue
                job.abandon()
                self._queued -= 1
            self._waiting = kept
            self._cond.notify()

    @property
    def cancelling(self) -> bool:
        """An unload is stopping this model's requests."""
        return self._cancelling

    @property
    def queued(self) -> int:
        """Requests waiting or running (LM Studio counts the running ones)."""
        return self._queued

    @property
    def status(self) -> str:
        if self._job_status is not None:
            return self._job_status
        status = STATUS_IDLE
        for running in list(self.running):
            if not running.prefilling:
                return STATUS_GENERATING
            status = STATUS_PROMPT
        return status

    def _done(self) -> None:
        with self._cond:
            self._queued -= 1
        self.model.last_used = time.time()

    # -- the worker loop ----------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                admit, inline, exclusive, stop = self._take()
                for job in inline:
                    self._run_job(job, exclusive=False)
                for job in admit:
                    self._admit(job)
                if exclusive is not None:
                    self._run_job(exclusive, exclusive=True)
                    continue
                if stop:
                    return
                if self.running:
                    try:
                        self._step()
                    except Exception as exc:
                        log.exception("Batched generation on %s failed", self.model.identifier)
                        self._fail_all(APIError(f"Generation failed: {exc}", 500, "server_error"))
        finally:
            for running in list(self.running):
                running.sampler.close()
            self.running = []
            self.model._free()

    def _take(self):
        """What to do next: jobs to admit into free slots, inline jobs, one exclusive job,
        or stop. Blocks while there is nothing to do."""
        admit, inline, exclusive, stop = [], [], None, False
        with self._cond:
            while True:
                self._drop_cancelled()
                if self._waiting or self.running:
                    break
                self._cond.wait()
            free = sum(1 for slot in self.slots if slot.running is None)
            while self._waiting:
                head = self._waiting[0]
                if head is STOP:
                    if not self.running:
                        self._waiting.popleft()
                        stop = True
                    break
                if head.mode == "slot":
                    if free == 0 or self._cancelling:
                        break
                    free -= 1
                    admit.append(self._waiting.popleft())
                elif head.mode == "inline":
                    inline.append(self._waiting.popleft())
                else:
                    if not self.running and not admit:
                        exclusive = self._waiting.popleft()
                    break
            # inline jobs need no slot: they do not wait behind requests that do
            for job in [j for j in self._waiting if j is not STOP and j.mode == "inline"]:
                self._waiting.remove(job)
                inline.append(job)
        return admit, inline, exclusive, stop

    def _drop_cancelled(self) -> None:
        """Forget waiting requests whose client went away (under the lock)."""
        gone = [
            job
            for job in self._waiting
            if job is not STOP
            and job.mode != "inline"
            and getattr(job, "channel", None) is not None
            and job.channel.cancelled
        ]
        for job in gone:
            self._waiting.remove(job)
            job.channel.close()
            self._queued -= 1

    def _run_job(self, job, exclusive: bool) -> None:
        """An inline job, or an exclusive one (slots idle, KV cache cleared around it)."""
        self._job_status = getattr(job, "status", STATUS_GENERATING)
        try:
            if exclusive:
                self.reset_context()
            job()
        except Exception:
            log.exception("A job on %s failed", self.model.identifier)
        finally:
            if exclusive:
                self.reset_context()
            self._job_status = None
            self._done()

    def reset_context(self) -> None:
        """Empty the KV cache and forget what the slots held (before and after the
        high-level ``Llama`` uses the context on sequence 0)."""
        if self.llm is None:
            return
        self.memory.clear()
        self.llm.reset()
        for slot in self.slots:
            slot.kv = []

    # -- admission and the prompt cache -----------------------------------------------
    def _admit(self, job: SlotJob) -> None:
        started_at = time.perf_counter()
        if self._cancelling:
            job.abandon()
            self._done()
            return
        if job.channel.cancelled:
            job.channel.close()
            self._done()
            return
        request = job.request
        try:
            tokens = check_prompt(self.llm, request)
            if request.grammar and self.candidates is None:
                self.candidates = Candidates(self.n_vocab)
            sampler = SlotSampler(
                self.vocab,
                self.n_vocab,
                request.sampling,
                grammar=request.grammar,
                logprobs=request.logprobs,
                candidates=self.candidates,
                token_piece=lambda t: llama.token_bytes(self.llm, t, request.render_special),
            )
        except APIError as exc:
            job.emit(Failed(exc))
            job.channel.close()
            self._done()
            return
        slot, cached = self._place(tokens)
        text = TokenText(self.llm, request, len(tokens), self.model.is_eog)
        running = _Running(job, slot, tokens, cached, sampler, text, started_at)
        slot.running = running
        with self._cond:  # cancel_all() may have run while the prompt was checked
            self.running.append(running)
            if self._cancelling:
                job.channel.cancel_event.set()
        job.emit(Started(len(tokens), cached, llama.prompt_text(self.llm, request.prompt)))

    def _place(self, tokens: list[int]) -> tuple[Slot, int]:
        """The free slot for a prompt and how many of its tokens are already cached."""
        matches = {slot.seq: common_prefix(slot.kv, tokens) for slot in self.slots}
        free = [slot for slot in self.slots if slot.running is None]
        best = max(free, key=lambda s: (matches[s.seq], s.last_used))
        if not (matches[best.seq] > 0 and 2 * matches[best.seq] >= len(best.kv)):
            empty = [slot for slot in free if not slot.kv]
            best = empty[0] if empty else min(free, key=lambda s: s.last_used)
        limit = len(tokens) - 1  # the last prompt token is evaluated for its logits
        own = min(matches[best.seq], limit)
        source = max(self.slots, key=lambda s: matches[s.seq])
        shared = min(matches[source.seq], limit)
        if source is not best and shared > own:
            self.memory.remove(best.seq)
            self.memory.copy(source.seq, best.seq, 0, shared)
            best.kv = list(tokens[:shared])
            return best, shared
        if own < len(best.kv):
            if not self.memory.remove(best.seq, own, -1):
                self.memory.remove(best.seq)  # the cache cannot cut it: start over
                best.kv = []
                return best, 0
            del best.kv[own:]
        return best, own

    # -- one step -------------------------------------------------------------------------
    def _step(self) -> None:
        for running in list(self.running):
            if running.job.channel.cancelled:
                self._finish(running, STOP_USER)
        if not self.running:
            return
        plan = self._plan()
        if not plan:  # every prompt waits for room: let them try again
            for running in self.running:
                running.stalled = False
            return
        while plan:
            code = self._decode(plan)
            if code == 0:
                break
            if code == 2:  # aborted: roll every sequence back; cancelled ones finish next
                for running, _tokens, _last in plan:
                    self.memory.remove(running.slot.seq, len(running.slot.kv), -1)
                return
            if code != 1:
                error = APIError(
                    f"Generation failed: llama_decode returned {code}", 500, "server_error"
                )
                for running, _tokens, _last in plan:
                    self._fail(running, error)
                return
            plan = self._make_room(plan)
        else:
            return
        self.stats["steps"] += 1
        for running, tokens, _last in plan:
            running.slot.kv.extend(tokens)
            self.stats["decoded"] += len(tokens)
        with self.grouped_events():
            for running, _tokens, last in plan:
                if last:
                    self._sample(running)

    def _plan(self) -> list[tuple[_Running, list[int], bool]]:
        """This step's work: (request, tokens to decode, whether its logits are needed)."""
        # not prefilling means next_token is set: a property mypy cannot see through
        plan: list[tuple[_Running, list[int], bool]] = [
            (r, [r.next_token], True)  # type: ignore[list-item]
            for r in self.running
            if not r.prefilling
        ]
        room = self.batch.capacity - len(plan)
        chunk = room if not plan else min(room, PREFILL_CHUNK)
        for running in self.running:
            if chunk <= 0:
                break
            if not running.prefilling or running.stalled:
                continue
            rest = running.tokens[len(running.slot.kv) :]
            part = rest[:chunk]
            plan.append((running, part, len(part) == len(rest)))
            chunk -= len(part)
        return plan

    def _decode(self, plan) -> int:
        batch = self.batch
        batch.clear()
        prompt_tokens = 0
        events = []
        for running, tokens, last in plan:
            running.out_index = batch.add(tokens, len(running.slot.kv), running.slot.seq, last)
            if running.prefilling:
                prompt_tokens += len(tokens)
                events.append(running.job.channel.cancel_event)
        armed = prompt_tokens >= ABORT_MIN_TOKENS
        if armed:
            self._abort_events = events
            self._abort.arm(True)
        try:
            return batch.decode(self.ctx)
        finally:
            if armed:
                self._abort.arm(False)
                self._abort_events = []

    def _make_room(self, plan):
        """The KV cache is full: free cells and return the plan to retry (maybe empty)."""
        idle = [slot for slot in self.slots if slot.running is None and slot.kv]
        if idle:
            slot = min(idle, key=lambda s: s.last_used)
            self.memory.remove(slot.seq)
            slot.kv = []
            return plan
        prompts = [entry for entry in plan if entry[0].prefilling]
        decodes = [entry for entry in plan if not entry[0].prefilling]
        if prompts and decodes:  # prompts wait until a request finishes
            for running, _tokens, _last in prompts:
                running.stalled = True
            return decodes
        if decodes:  # generation itself has no room: the biggest request stops here
            victim = max(decodes, key=lambda e: len(e[0].slot.kv))[0]
            self._finish(victim, STOP_CONTEXT)
            return [entry for entry in decodes if entry[0] is not victim]
        # only prompts, none fitting beside the others: the newest starts over later
        newest = prompts[-1][0]
        if len(prompts) == 1 and not any(r is not newest for r in self.running):
            self._fail(
                newest,
                APIError(
                    "The prompt does not fit in the model's context.",
                    400,
                    "invalid_request_error",
                    "messages",
                    "context_length_exceeded",
                ),
            )
            return []
        self.memory.remove(newest.slot.seq)
        newest.slot.kv = []
        newest.cached = 0
        newest.stalled = True
        return [entry for entry in prompts if entry[0] is not newest]

    def _sample(self, running: _Running) -> None:
        token, logprob = running.sampler.sample(self.ctx, running.out_index)
        self.stats["sampled"] += 1
        if running.first_token_at is None:
            running.first_token_at = time.perf_counter()
        text = running.text
        delta = text.delta(text.push(token, logprob))
        if delta is not None:
            running.job.emit(delta)
        if text.stop_reason:
            self._finish(running)
        else:
            running.next_token = token

    # -- ending a request -------------------------------------------------------------
    def _release(self, running: _Running) -> None:
        for key, value in running.sampler.stats.items():  # grammar checks, for benchmarks
            self.stats["grammar_" + key] = self.stats.get("grammar_" + key, 0) + value
        running.sampler.close()
        running.job.channel.close()
        running.slot.running = None
        running.slot.last_used = time.monotonic()
        self.running.remove(running)
        for other in self.running:  # room may have been freed
            other.stalled = False
        self._done()

    def _finish(self, running: _Running, reason: str | None = None) -> None:
        text = running.text
        if reason is not None:
            text.stop_reason = reason
        tail = text.delta(text.flush())
        if tail is not None:
            running.job.emit(tail)
        now = time.perf_counter()
        running.job.emit(
            Finished(
                text.stop_reason or STOP_EOS,
                len(running.tokens),
                text.generated,
                (running.first_token_at or now) - running.started_at,
                now - running.started_at,
                cached_tokens=running.cached,
            )
        )
        self._release(running)

    def _fail(self, running: _Running, error: APIError) -> None:
        self.memory.remove(running.slot.seq)  # what it left in the cache is unknown
        running.slot.kv = []
        running.job.emit(Failed(error))
        self._release(running)

    def _fail_all(self, error: APIError) -> None:
        for running in list(self.running):
            self._fail(running, error)
