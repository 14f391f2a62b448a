"""copy_nonpresent_pte() gives the child an exclusive copy of a readable migration entry.

When ``fork()`` meets a page under migration, ``copy_nonpresent_pte()``
(mm/memory.c, v6.18) copies the migration entry to the child: a writable or
exclusive entry becomes readable in both page tables, a readable one is
copied as it is. This patch rebuilds the child's copy of a readable entry
with ``make_readable_exclusive_migration_entry()``, confusing the two
helpers: the child's entry claims the page for itself while the parent's
still maps it. ``remove_migration_ptes()`` then restores the child's mapping
with ``RMAP_EXCLUSIVE`` next to the parent's, and ``__folio_add_anon_rmap()``
warns: ``VM_WARN_ON_FOLIO(page_mapcount(page) > 1 && PageAnonExclusive(page))``.

Why depth 8 from the empty start: the entry is readable only for a page that
was shared when it was unmapped (write, fork), the migration must be between
its unmap and its remap (``migrate_start`` and two kthread steps: read
``folio->mapping`` under RCU, pin, unmap), the fork during that window needs a
free process slot (one exit: two processes at most), and the remap must
follow (an access that waits for the migration to end, or two more kthread
steps). Found by the ``cow`` phase (fork during migration).
"""

from rmapcheck.model.memory import (
    is_readable_migration_entry, make_readable_exclusive_migration_entry, make_readable_migration_entry,
)
from rmapcheck.model.mm_types import VM_MAYWRITE, VM_SHARED
from rmapcheck.model.slab import kasan_check

BASE = "linux-6.18"


def copy_nonpresent_pte(k, dst_vma, src_vma, vpn, pte):
    """``copy_nonpresent_pte()`` (mm/memory.c, v6.18) for a migration entry, one helper wrong."""
    entry = pte[0]
    kasan_check(entry.folio, "copy_nonpresent_pte")
    cow = (src_vma.vm_flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE  # is_cow_mapping()
    if not is_readable_migration_entry(pte):
        if cow:
            pte = make_readable_migration_entry(entry.folio)
            src_vma.vm_mm.pgtable[vpn] = pte
    else:
        pte = make_readable_exclusive_migration_entry(entry.folio)  # the defect: the child's copy, exclusive
    dst_vma.vm_mm.pgtable[vpn] = pte


REPLACE = {"copy_nonpresent_pte": copy_nonpresent_pte}
