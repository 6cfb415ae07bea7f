"""Model events for push clients: one feed of ``lms ps`` row changes (loading, load
progress, loaded, unloaded, status, queue, crashed) that the sidebar, ``%lms ps --watch``
and ``lms-jupyter ps --watch`` read over one SSE route instead of polling."""
from lms_jupyter.model_events.feed import EVENT_KINDS, ModelEventFeed, diff_rows

__all__ = ["EVENT_KINDS", "ModelEventFeed", "diff_rows"]
