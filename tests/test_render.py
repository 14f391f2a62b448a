"""Address maps and anon_vma listings of hand-built kernel structures."""

from rmapcheck.model.mm_types import (
    VM_EXEC,
    VM_READ,
    VM_WRITE,
    ZERO_PAGE,
    anon_vma,
    anon_vma_chain,
    folio,
    mm_struct,
    vm_area_struct,
)
from rmapcheck.scenario.ops import Region, Scenario
from rmapcheck.scenario.render import ARENA_BASE_VPN, address_map, anon_vma_tree, vma_namer

B = ARENA_BASE_VPN
RW = VM_READ | VM_WRITE


def make_mm(owner):
    mm = mm_struct()
    mm.owner = owner
    return mm


def add_vma(mm, start, end, flags, av=None, pgoff=None):
    vma = vm_area_struct()
    vma.vm_mm = mm
    vma.vm_start, vma.vm_end = B + start, B + end
    vma.vm_pgoff = B + start if pgoff is None else B + pgoff
    vma.vm_flags = flags
    vma.anon_vma = av
    mm.mmap.append(vma)
    mm.mmap.sort(key=lambda v: v.vm_start)
    if av is not None:
        avc = anon_vma_chain()
        avc.vma, avc.anon_vma = vma, av
        vma.anon_vma_chain.insert(0, avc)
        av.rb_root.append(avc)
    return vma


def make_av(slot, parent=None):
    av = anon_vma()
    av._slot = slot
    if parent is not None:
        av.parent, av.root = parent, parent.root
    return av


def scenario():
    return Scenario(
        name="t", regions={"A": Region("A", 4, 0), "B": Region("B", 2, 5)}, ops=[]
    )


def world():
    """P0 mapped A rw and wrote A[0], read A[1], forked P1, mapped B r;
    P1 wrote A[2]."""
    av0 = make_av(0)
    av0.refcount, av0.num_children, av0.num_active_vmas = 2, 2, 1
    av1 = make_av(1, parent=av0)
    av1.refcount, av1.num_children, av1.num_active_vmas = 1, 1, 1
    p0, p1 = make_mm("P0"), make_mm("P1")
    a0 = add_vma(p0, 0, 4, RW, av0)
    add_vma(p0, 5, 7, VM_READ)
    a1 = add_vma(p1, 0, 4, RW, av1)
    av0.rb_root.append(a1.anon_vma_chain[0])  # the child's VMA hangs in the parent's tree too
    f0, f1 = folio(), folio()
    p0.pgtable = {B + 0: (f0, False), B + 1: (ZERO_PAGE, False)}
    p1.pgtable = {B + 0: (f0, False), B + 1: (ZERO_PAGE, False), B + 2: (f1, True)}
    assert a0.anon_vma is av0
    return {"P1": p1, "P0": p0}, [av0, av1]


def test_address_map_fork():
    mms, _ = world()
    assert address_map(mms, scenario(), highlight=(2, 3)) == (
        "P0        A    B\n"
        "          0123456\n"
        "op:         *\n"
        "vma:      AAAA.BB\n"
        "prot:     wwww.rr\n"
        "anon_vma: aaaa...\n"
        "pages:    0z.....\n"
        "\n"
        "P1        A    B\n"
        "          0123456\n"
        "op:         *\n"
        "vma:      AAAA...\n"
        "prot:     wwww...\n"
        "anon_vma: bbbb...\n"
        "pages:    0z1...."
    )


def test_address_map_without_highlight_and_protections():
    mm = make_mm("P0")
    add_vma(mm, 0, 1, 0)
    add_vma(mm, 1, 2, VM_READ | VM_EXEC)
    add_vma(mm, 2, 3, RW | VM_EXEC)
    add_vma(mm, 3, 5, RW)
    add_vma(mm, 7, 30, VM_READ)  # runs past the arena: clipped
    s = Scenario(
        name="t",
        regions={"stack": Region("stack", 2, 0), "heap": Region("heap", 18, 2)},
        ops=[],
    )
    assert s.arena_pages == 20
    assert address_map({"P0": mm}, s) == (
        "P0        s heap\n"
        "          0123456789abcdef0123\n"
        "vma:      ABCDD..EEEEEEEEEEEEE\n"
        "prot:     -xXww..rrrrrrrrrrrrr\n"
        "anon_vma: ....................\n"
        "pages:    ...................."
    )


def test_symbols_are_shared_across_processes():
    av = make_av(3)
    f = folio()
    p1, p2 = make_mm("P1"), make_mm("P2")
    add_vma(p1, 0, 2, RW, av)
    add_vma(p2, 1, 2, RW, av)
    p1.pgtable = {B + 1: (f, False)}
    p2.pgtable = {B + 1: (f, False)}
    s = Scenario(name="t", regions={"A": Region("A", 2, 0)}, ops=[])
    text = address_map({"P2": p2, "P1": p1}, s)
    # an object without an allocation serial is named by its slot (anon_vma
    # slot 3: d), one without either in order of appearance (the folio: 0)
    assert text.split("\n\n") == [
        "P1        A\n          01\nvma:      AA\nprot:     ww\nanon_vma: dd\npages:    .0",
        "P2        A\n          01\nvma:      .A\nprot:     .w\nanon_vma: .d\npages:    .0",
    ]


def test_anon_vma_tree():
    mms, avs = world()
    name = vma_namer(mms, scenario())
    assert anon_vma_tree(avs, name) == (
        "a anon_vma#0: root=a parent=a refcount=2 num_children=2 num_active_vmas=1\n"
        "    P0 A [0,4)\n"
        "    P1 A [0,4)\n"
        "b anon_vma#1: root=a parent=a refcount=1 num_children=1 num_active_vmas=1\n"
        "    P1 A [0,4)"
    )


def test_anon_vma_tree_unnamed_moved_and_stray():
    av = anon_vma()  # no slab slot
    mm = make_mm("P7")
    add_vma(mm, 2, 4, RW, av, pgoff=0)  # moved by mremap: pgoff stays
    avc = anon_vma_chain()
    av.rb_root.append(avc)
    av.refcount = 1
    name = vma_namer({}, scenario())
    assert anon_vma_tree([av], name) == (
        "a anon_vma#?: root=a parent=a refcount=1 num_children=0 num_active_vmas=0\n"
        "    P7 ? [2,4) pgoff 0\n"
        "    (anon_vma_chain without a vma)"
    )
