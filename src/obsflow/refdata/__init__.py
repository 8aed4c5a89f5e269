"""Reference data: validation, the site registry and the selection rules ("best refs")."""

from obsflow.refdata.registry import FolderRefs, ReferenceFile, SiteRefs, deliver
from obsflow.refdata.select import Selection, best_reference
from obsflow.refdata.validate import REFTYPES, ReferenceFileError, RefRecord, read_record

__all__ = ["REFTYPES", "FolderRefs", "RefRecord", "ReferenceFile", "ReferenceFileError",
           "Selection", "SiteRefs", "best_reference", "deliver", "read_record"]
