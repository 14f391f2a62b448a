"""copy_nonpresent_pte() copies a migration entry to the child only when it had to make it read-only.

When ``fork()`` meets a page under migration, ``copy_nonpresent_pte()``
(mm/memory.c, v6.18) copies the migration entry to the child, first turning
a writable or exclusive entry into a readable one in both page tables ("COW
mappings require pages in both parent and child to be set to read"). This
patch misplaces a brace: the ``set_pte_at()`` of the child moves into that
branch, so an entry that was readable already (the page was shared before it
was unmapped) is not copied. The child has no page there; once it reads it,
it reads zeroes where it inherited its parent's data (data-corruption).

Why depth 8 from the empty start: the entry is readable only for a page that
was shared when it was unmapped (write, fork), the migration must be between
its unmap and its remap (``migrate_start`` and two kthread steps: read
``folio->mapping`` under RCU, pin, unmap), the fork during that window needs a
free process slot (one exit: two processes at most), and the child must read
the page. Found by the ``cow`` phase (two values, reads, fork during
migration).
"""

from rmapcheck.model.memory import is_readable_migration_entry, make_readable_migration_entry
from rmapcheck.model.mm_types import VM_MAYWRITE, VM_SHARED
from rmapcheck.model.slab import kasan_check

BASE = "linux-6.18"


def copy_nonpresent_pte(k, dst_vma, src_vma, vpn, pte):
    """``copy_nonpresent_pte()`` (mm/memory.c, v6.18) for a migration entry, with the brace misplaced."""
    entry = pte[0]
    kasan_check(entry.folio, "copy_nonpresent_pte")
    cow = (src_vma.vm_flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE  # is_cow_mapping()
    if not is_readable_migration_entry(pte) and cow:
        pte = make_readable_migration_entry(entry.folio)
        src_vma.vm_mm.pgtable[vpn] = pte
        dst_vma.vm_mm.pgtable[vpn] = pte  # the defect: the child's copy belongs after the branch


REPLACE = {"copy_nonpresent_pte": copy_nonpresent_pte}
