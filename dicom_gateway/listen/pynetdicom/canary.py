"""The pynetdicom code our adaptations rely on, fingerprinted, and checked at listener start.

``dicom_gateway/listen/pynetdicom/compat.py``, ``dicom_gateway/listen/pynetdicom/encoding.py`` and
``dicom_gateway/listen/dispatch.py`` stand in for, or lean on, pynetdicom internals
that no public API promises. Each of their adaptations declares (in its module's
``RELIES_ON``) the functions and methods whose behaviour it assumes. :data:`SOURCE_SHA256`
holds the sha256 of the whole source of each (``inspect.getsource``, line endings
normalised) as read from the pynetdicom (and pydicom) release named in
:data:`RECORDED_FOR`. A substring test would catch a removal, not a changed or added line;
a hash catches both.

At listener start :func:`checked_at_start` compares them (once per process).  An
adaptation whose code changed is not installed (pynetdicom's own behaviour stays) and one
warning names what changed; the others still work.  After an upgrade: review each changed function
against its adaptation, then paste the table ``python -m dicom_gateway.listen.pynetdicom.canary``
prints.

A key ``module:name`` stands for every function and method of ``module`` that reads the
global ``name``: ``install_wakeups`` swaps the ``time`` module of two pynetdicom modules,
so a sleep added anywhere in them is relied-on code too.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from types import ModuleType

from dicom_gateway.listen import dispatch as connection_dispatch
from dicom_gateway.listen.pynetdicom import compat as pynetdicom_compat
from dicom_gateway.listen.pynetdicom import encoding as pynetdicom_encoding

log = logging.getLogger(__name__)

RECORDED_FOR = {"pynetdicom": "3.0.4", "pydicom": "3.0.2"}

# adaptation -> the entries it relies on, declared next to each adaptation's code
ADAPTATIONS: dict[str, tuple[str, ...]] = {
    **pynetdicom_compat.RELIES_ON, **pynetdicom_encoding.RELIES_ON,
    **connection_dispatch.RELIES_ON}

SOURCE_SHA256: dict[str, str] = {
    "pydicom.filewriter.write_file_meta_info":
        "0568f3155349513bbef9976e179831f8aa76591e0adaa36566a1a17947c667e5",
    "pynetdicom.acse.ACSE._negotiate_as_acceptor":
        "fffd360957c42a8ed89284cf1b1b734527c9be60253950777a0330c0f2be692e",
    "pynetdicom.acse.ACSE.negotiate_association":
        "a6f771214fa494c1fb586f135ad6b06017155c3f23feed62e5cddf858c353b99",
    "pynetdicom.ae.ApplicationEntity.__init__":
        "e3a79476e8282ac10f385a85eb6e4849fe4ecb1929b825c6b30d4aed85b188fb",
    "pynetdicom.ae.ApplicationEntity.active_associations.fget":
        "23da190dfcca5dbd0e85d8624c0937cb4c923fd0623198dc8d3efcf1e8001223",
    "pynetdicom.ae.ApplicationEntity.make_server":
        "6569298ac5cf837c040e6e5bcf3761f69f3792b21b15085f34ebbafcc29b9904",
    "pynetdicom.ae.ApplicationEntity.maximum_associations.fget":
        "8d02de6a5b0c93a7b51f46f73fd22b1569e33c0347f64fb062bd488e72a4cafa",
    "pynetdicom.ae.ApplicationEntity.maximum_associations.fset":
        "fa680cd0b2675923ffe2eade89051b531b9aa69fe4e7aca016fde12975206f6c",
    "pynetdicom.ae.ApplicationEntity.start_server":
        "d3868a2df83d3cc08966b575dd8663ee18f101b03ec8d2766639c621b2d58841",
    "pynetdicom.association.Association.__init__":
        "eb07516b8009ad8fa338201dea39578380fbf9f2c59fa5e368e20250eb97c4ea",
    "pynetdicom.association.Association._abort_blocking":
        "10b43ef8c63c67649b7d82f3af2aa55b6798149a007ab758d11e7286ff4168d8",
    "pynetdicom.association.Association._bind_defaults":
        "4cada43c3a1937240a09fdb33edfe2eeb1924a627b13a4e4471cd26f41fd2bf8",
    "pynetdicom.association.Association._run_reactor":
        "f28838c5559e462a563750cfc9f3790027f4bb7e2223baf42c9f5d682c359dee",
    "pynetdicom.association.Association.acse_timeout.fset":
        "f357778b5c4db7b243e90b1c25ade6cbba771ca585690d37ccd9d5925de95499",
    "pynetdicom.association.Association.get_handlers":
        "7cb7298701d5c7661c15da5037157dbac930c739d7b54ec8c08e7fe584d1e301",
    "pynetdicom.association.Association.kill":
        "8f9713666a7f4cffd840899f023090e9786668945a7c844f99d7a834077c3972",
    "pynetdicom.association.Association.run_reactor":
        "ed8bbbe3b3d6ddaee3e8673ba25b2ab2a4c45f25bc1d8ae7b48ebafd09499e6d",
    "pynetdicom.association:time":
        "a501047114b1f60ec4af4c459ac226ab73ff82f6404e15e0a0667b25b1d711ba",
    "pynetdicom.dimse.DIMSEServiceProvider.__init__":
        "bbecd186810e77006d189aff29c42e76d226cd6b34cbb12066c56300a8280ef4",
    "pynetdicom.dimse.DIMSEServiceProvider.get_msg":
        "890e3e04283f5aeb756236f1a4dd35d3a10bbdd52f3efa3f3950c01f47bd2b34",
    "pynetdicom.dimse.DIMSEServiceProvider.maximum_pdu_size.fget":
        "600fc7073d35ccd6c99ef1959551f308544b4fc0156fa6afde7fa536318622bf",
    "pynetdicom.dimse.DIMSEServiceProvider.peek_msg":
        "f57f51ddcd3e6de251a9c4edf42b2292a0d206e7f84de24d64b6f8a71f01dd1c",
    "pynetdicom.dimse.DIMSEServiceProvider.receive_primitive":
        "5f99c86b14a15cefa87d914cda3591ec4d636d4c53a982e945ec9c1828c6e43f",
    "pynetdicom.dimse.DIMSEServiceProvider.send_msg":
        "a839cf2fb46976d9da29cf06fea41c04416b38d14fab612af12e5d869bd5b3f0",
    "pynetdicom.dimse_messages.C_STORE_RSP":
        "3afd6139a34c3ca95851593a70f6513701f53ffdcfa699cd61b97d944bf381ad",
    "pynetdicom.dimse_messages.DIMSEMessage.__init__":
        "b9c44307ebf25f196c1a13ef9273539444cb5f20207322544ab5feb4f6afda84",
    "pynetdicom.dimse_messages.DIMSEMessage.decode_msg":
        "f51c777e841a76beeaadfe3015bd4f4a68387229a72f13f3a3b7846d01d72284",
    "pynetdicom.dimse_messages.DIMSEMessage.encode_msg":
        "73000c902c52832dab302ddb3bc274ea93d205a810a197225dd87d4c1212ba57",
    "pynetdicom.dimse_messages.DIMSEMessage.message_to_primitive":
        "f8f43d34e43450efa31bd308677b85b370f8ca7600c0e067e854f8095ce665ac",
    "pynetdicom.dimse_messages.DIMSEMessage.primitive_to_message":
        "71fd61d5997f0f0c38abc2d383c4c6457f9c770468288aab04eb82a04d00ce00",
    "pynetdicom.dsutils.create_file_meta":
        "035ed415f5aeea15543cca3b0b7b2b6d5a3189bc807a0211f5c633bb356ab9e3",
    "pynetdicom.dul.DULServiceProvider.__init__":
        "c82dafa9438ddf70685917cb15d2bfbc814aa0ad5233ffb0ae650faedc7570f0",
    "pynetdicom.dul.DULServiceProvider._is_transport_event":
        "8725ed03bb8fbdefef249d5d9888c120e6277d7b6aa2c4f537e23027186e1253",
    "pynetdicom.dul.DULServiceProvider._process_recv_primitive":
        "4c0ebbb3e646e35e8e5bbc27ee2f1e6b2c82bbf619232f47639a6cbae092ed39",
    "pynetdicom.dul.DULServiceProvider._read_pdu_data":
        "19f2d4e38c13c83586365d93dd5cd96a0c7c665cb37251054b3e1f246e9f431b",
    "pynetdicom.dul.DULServiceProvider.run_reactor":
        "e3a10eb3a0931e4854af33b9496e92d9679522aca26b0e04da8967559b9e2803",
    "pynetdicom.dul.DULServiceProvider.send_pdu":
        "7cbce5da8594124e9e70c790a68df640d21df11af4220783e752bc607de8dde6",
    "pynetdicom.dul.DULServiceProvider.stop_dul":
        "28a7e0be126e7b306369cc1b131daec8e907d21d0f5692930133b6599b8c6e5f",
    "pynetdicom.dul:time":
        "8a363fb23ca5424549d08b7b06c507ae8f1d5b13da6055e3dbfd017657686a3a",
    "pynetdicom.fsm.AR_6":
        "4c7826acf846b4a71ecd72186d38d0c9e4c2ec563e0a0b6b7a7d0caf0d4b34cc",
    "pynetdicom.fsm.DT_2":
        "9ec543394e0b49eb8be2448fc3f9950361b0047db7cf3742844f377bd225ba73",
    "pynetdicom.pdu_primitives.P_DATA.presentation_data_value_list.fset":
        "d69b53e37230894467aa1c0465fd99989f46b7bc2b18bf99134aa9a9932027c3",
    "pynetdicom.service_class.StorageServiceClass.SCP":
        "63afca7fc6c6e7ee6e6eb303dd6aa72c1e69dbfcb94dd91c9e90ea6d900a4c40",
    "pynetdicom.transport.AssociationServer.__init__":
        "edacb98bdfb7b9744194698d47fa51d4e2d5c9ed02ef5fb5181f381b31118423",
    "pynetdicom.transport.AssociationServer._bind_defaults":
        "4cada43c3a1937240a09fdb33edfe2eeb1924a627b13a4e4471cd26f41fd2bf8",
    "pynetdicom.transport.AssociationServer.get_request":
        "925a4f3a3042f6e4b944505d06dc19c41e10ff7dec5385c794d62d31fd000300",
    "pynetdicom.transport.AssociationServer.server_bind":
        "cf69278a05a5c777b7e9e9af0769e3102618027b2ec8035a30af8cc370ebdae6",
    "pynetdicom.transport.AssociationServer.server_close":
        "3fa1b358badbe6826671da5e9d11cd86944be35327c47caeeff571f74bc3cca9",
    "pynetdicom.transport.AssociationServer.shutdown":
        "e8e2c3a41009886d8544d17ce01118a81bac81b612a1d17f30fc200971f41db9",
    "pynetdicom.transport.AssociationSocket.__init__":
        "1f0325fdef2cc35320f7854b1643c528f764665e4d4e52ca4392f60f74537293",
    "pynetdicom.transport.AssociationSocket.close":
        "c726c8db53813d551475b8b4560634708a64c50bfe818fd2d1df1c06bdeec099",
    "pynetdicom.transport.AssociationSocket.ready.fget":
        "3eb58e3d39dc076df7a04c804ca183ffd3f4d1b34361039e9e6f11de3d45579c",
    "pynetdicom.transport.AssociationSocket.recv":
        "6bc20a33b1b7cfe76d4ad4407ca242563bc6206fde4b4e1cf7a2fbb1f11d621d",
    "pynetdicom.transport.RequestHandler._create_association":
        "05c8d12b79863cdbdb901ce37187b7030a0434c5cd89d219ed0bedbda679a61e",
    "pynetdicom.transport.RequestHandler.handle":
        "034823fb4df3a87467bd0d45193f0d457fcf59c87fda8e97b2edfb89426f76dd",
    "pynetdicom.transport.ThreadedAssociationServer.process_request_thread":
        "9e76e9b9c8a3d8b18bb1df7ac652c86f21b4aaaf39e10deca9312f91a7c21a8a",
}


def _module(name: str, modules: Mapping[str, ModuleType]) -> ModuleType:
    return modules[name] if name in modules else importlib.import_module(name)


def resolve(dotted: str, modules: Mapping[str, ModuleType] | None = None) -> object:
    """The object a dotted name names: the longest importable prefix, then attributes
    (so ``pkg.mod.Class.prop.fset`` reaches a property's setter).  ``modules`` stands
    in for imported modules by name (a test's modified copy)."""
    modules = modules or {}
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            obj: object = _module(name, modules)
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@functools.lru_cache(maxsize=64)
def _readers_of_global(module: ModuleType, name: str) -> str:
    """The source of every function and method of ``module`` that reads ``name``, in
    file order (a new reader, or a changed one, changes the text).  Kept per module
    object: parsing a pynetdicom module whole is most of a check's cost, and a test's
    modified copy is another object."""
    source = inspect.getsource(module)
    tree = ast.parse(source)
    defs = [node for top in tree.body
            for node in ([top] + (top.body if isinstance(top, ast.ClassDef) else []))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    lines = source.splitlines(keepends=True)
    return "".join(
        "".join(lines[min([d.lineno] + [x.lineno for x in d.decorator_list]) - 1:
                      d.end_lineno])
        for d in defs if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(d)))


def source_of(key: str, modules: Mapping[str, ModuleType] | None = None) -> str:
    """The text an entry's hash is taken of."""
    if ":" in key:
        module, name = key.split(":", 1)
        return _readers_of_global(_module(module, modules or {}), name)
    return _source(resolve(key, modules))


@functools.lru_cache(maxsize=256)
def _source(obj: object) -> str:
    """``inspect.getsource``, kept per object (a class's source is found by parsing its
    whole module)."""
    return inspect.getsource(obj)  # type: ignore[arg-type]


def fingerprint(text: str) -> str:
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def check(recorded: Mapping[str, str] | None = None,
          modules: Mapping[str, ModuleType] | None = None) -> dict[str, str]:
    """Entries whose code is not what was recorded: key -> "changed" or why it cannot
    be read.  Empty when every relied-on function is as reviewed."""
    recorded = SOURCE_SHA256 if recorded is None else recorded
    mismatches: dict[str, str] = {}
    for key in sorted(set().union(*ADAPTATIONS.values())):
        expected = recorded.get(key)
        if expected is None:
            mismatches[key] = "no hash recorded"
            continue
        try:
            text = source_of(key, modules)
        except Exception as exc:  # noqa: BLE001 - gone, or no source: as good as changed
            mismatches[key] = f"gone ({type(exc).__name__}: {exc})"
            continue
        if fingerprint(text) != expected:
            mismatches[key] = "changed"
    return mismatches


@dataclass(frozen=True)
class Verdict:
    """What the canary found, and which adaptations are left to stock pynetdicom."""

    mismatches: Mapping[str, str]
    off: frozenset[str]

    def usable(self, *adaptations: str) -> bool:
        unknown = set(adaptations) - set(ADAPTATIONS)
        if unknown:
            raise KeyError(f"no such adaptation: {', '.join(sorted(unknown))}")
        return not self.off.intersection(adaptations)


def judge(mismatches: Mapping[str, str]) -> Verdict:
    """Each adaptation that relies on a mismatched entry is off; the others stay on."""
    off = frozenset(a for a, keys in ADAPTATIONS.items() if set(keys) & set(mismatches))
    return Verdict(dict(mismatches), off)


def _installed(names: Iterable[str]) -> str:
    return ", ".join(f"{n} {version(n)}, hashes recorded for {RECORDED_FOR[n]}"
                     for n in names)


@functools.cache
def verdict() -> Verdict:
    """The check, once per process (about 60 ms)."""
    return judge(check())


@functools.cache
def checked_at_start() -> Verdict:
    """:func:`verdict`, and the one warning when anything differs (once per process: the
    process that owns the port says it, not each listener process behind it)."""
    found = verdict()
    if found.mismatches:
        log.warning(
            "pynetdicom code the listener's adaptations rely on differs from the reviewed "
            "code (%s): %s; using pynetdicom's own behaviour for: %s. Review "
            "dicom_gateway/listen/pynetdicom/compat.py, encoding.py and "
            "dicom_gateway/listen/dispatch.py against it, "
            "then update dicom_gateway/listen/pynetdicom/canary.py",
            _installed(RECORDED_FOR),
            "; ".join(f"{k} {why}" for k, why in sorted(found.mismatches.items())),
            ", ".join(sorted(found.off)))
    return found


def table() -> str:
    """:data:`SOURCE_SHA256` as read from what is installed, ready to paste."""
    lines = [f'    "{key}":\n        "{fingerprint(source_of(key))}",'
             for key in sorted(set().union(*ADAPTATIONS.values()))]
    return "SOURCE_SHA256: dict[str, str] = {\n" + "\n".join(lines) + "\n}\n"


if __name__ == "__main__":
    installed = ", ".join(f'"{n}": "{version(n)}"' for n in RECORDED_FOR)
    sys.stdout.write(f"RECORDED_FOR = {{{installed}}}\n\n" + table())
