"""Reference data: validation, the site registry, numbered contexts and the selection rules."""

from typing import TYPE_CHECKING

from obsflow._lazy import lazy_exports

if TYPE_CHECKING:
    from obsflow.refdata.compare import (
        ContextDiff,
        FileChange,
        RefChange,
        affected_mask,
        affected_reftypes,
        diff_contexts,
        select_file_ids,
    )
    from obsflow.refdata.contexts import (
        ContextSummary,
        RefContext,
        list_contexts,
        load_context,
        newest_context,
        operational_context,
        pin_context,
        pinned_number,
    )
    from obsflow.refdata.registry import (
        Delivery,
        FolderRefs,
        ReferenceFile,
        SiteRefs,
        deliver,
        deliver_batch,
        is_delivered,
    )
    from obsflow.refdata.select import (
        RULES_VERSION,
        ProductSelectors,
        Selection,
        best_reference,
        bulk_select,
    )
    from obsflow.refdata.validate import REFTYPES, RefRecord, read_record

__all__ = ["REFTYPES", "RULES_VERSION", "ContextDiff", "ContextSummary", "Delivery",
           "FileChange", "FolderRefs", "ProductSelectors", "RefChange", "RefContext",
           "RefRecord", "ReferenceFile", "Selection", "SiteRefs",
           "affected_mask", "affected_reftypes", "best_reference", "bulk_select", "deliver",
           "deliver_batch", "diff_contexts", "is_delivered", "list_contexts", "load_context",
           "newest_context", "operational_context", "pin_context", "pinned_number",
           "read_record", "select_file_ids"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "ContextDiff": "compare",
    "FileChange": "compare",
    "RefChange": "compare",
    "affected_mask": "compare",
    "affected_reftypes": "compare",
    "diff_contexts": "compare",
    "select_file_ids": "compare",
    "ContextSummary": "contexts",
    "RefContext": "contexts",
    "list_contexts": "contexts",
    "load_context": "contexts",
    "newest_context": "contexts",
    "operational_context": "contexts",
    "pin_context": "contexts",
    "pinned_number": "contexts",
    "Delivery": "registry",
    "FolderRefs": "registry",
    "ReferenceFile": "registry",
    "SiteRefs": "registry",
    "deliver": "registry",
    "deliver_batch": "registry",
    "is_delivered": "registry",
    "RULES_VERSION": "select",
    "ProductSelectors": "select",
    "Selection": "select",
    "best_reference": "select",
    "bulk_select": "select",
    "REFTYPES": "validate",
    "RefRecord": "validate",
    "read_record": "validate",
})
