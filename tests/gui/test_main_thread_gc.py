"""The cycle collector runs on the GUI thread only: a worker thread's allocations never free a Qt object."""
import gc
import threading
import weakref

from PySide6.QtCore import QObject

from musicapp.main_thread_gc import MainThreadGC, settle


class Holder:
    pass


def test_qt_objects_in_garbage_cycles_are_freed_on_the_gui_thread(main_thread_gc):
    assert not gc.isenabled()
    freed_in = []
    holder = Holder()
    holder.me = holder  # a cycle: only the collector can free it
    holder.obj = QObject()
    holder.obj.destroyed.connect(lambda *_: freed_in.append(threading.current_thread().name))
    del holder

    def allocate_cycles():  # crosses gc's thresholds many times over
        for _ in range(50_000):
            h = Holder()
            h.me = h

    worker = threading.Thread(target=allocate_cycles, name="worker")
    worker.start()
    worker.join()
    assert freed_in == []
    main_thread_gc.collect()
    gc.collect()
    assert freed_in == ["MainThread"]


def test_stop_hands_collection_back(main_thread_gc):
    nested = MainThreadGC()
    nested.stop()
    assert not gc.isenabled()  # it was off when `nested` started: it stays off
    main_thread_gc.stop()
    assert gc.isenabled()


def test_settle_frees_garbage_then_exempts_the_survivors(main_thread_gc):
    freed = []
    garbage = Holder()
    garbage.me = garbage
    garbage.obj = QObject()
    garbage.obj.destroyed.connect(lambda *_: freed.append("garbage"))
    del garbage
    kept = Holder()
    kept.me = kept
    settle()
    assert freed == ["garbage"]
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # frozen: no collection walks it

    alive = weakref.ref(kept)
    del kept  # a frozen cycle that became garbage (a replaced model): the next settle still frees it
    gc.collect()
    assert alive() is not None
    settle()
    assert alive() is None


def test_stop_thaws_what_settle_froze(main_thread_gc):
    settle()
    assert gc.get_freeze_count() > 0
    main_thread_gc.stop()
    assert gc.get_freeze_count() == 0
