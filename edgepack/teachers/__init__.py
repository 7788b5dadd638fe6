"""Teachers: whatever model a user brings, as a function from a normalised NCHW batch to logits.

Sources (:class:`TeacherSpec`): a torch.export ``.pt2``; TorchScript (``.ts``/``.ptl``, and
``.pt``/``.pth`` when their content says so); ONNX; Keras ``.keras``/``.h5`` and SavedModel folders;
the user's own ``package.module:function`` or a torchvision builder, with a state dict. Loaders are
picked from :data:`LOADERS` and never run pickled code; :func:`check_teacher` then runs one real
batch and resolves the input layout.
"""

from edgepack.teachers._load import LOADERS, load_teacher
from edgepack.teachers._spec import LoadedTeacher, Teacher, TeacherInfo, TeacherSpec
from edgepack.teachers._validate import check_teacher

__all__ = [
    "LOADERS",
    "LoadedTeacher",
    "Teacher",
    "TeacherInfo",
    "TeacherSpec",
    "check_teacher",
    "load_teacher",
]
