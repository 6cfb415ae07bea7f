"""Every wire field, declared once (:class:`.field.Field`): the request parsers check these
declarations, and the OpenAPI document's schemas (and the sidebar's TypeScript types, built
from that document) are derived from them. One module per API surface."""
