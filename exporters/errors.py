"""The exception hierarchy of `exporters`: every error a user can act on derives from ExportError.

Each message names the file or value at fault and says what to do next; an export that raises one
of these before writing has written nothing.
"""


class ExportError(RuntimeError):
    """Base class of exporter errors."""


class ExportConfigError(ExportError):
    """An export setting (roughness, LOD budgets, texture size, ...) is out of range."""


class MeshInputError(ExportError):
    """The HeadMesh folder or arrays are unusable (missing file, wrong shape, wrong dtype)."""


class EmptyMeshError(MeshInputError):
    """The mesh has no vertices or no faces."""


class NonFiniteVerticesError(MeshInputError):
    """Some vertex coordinates are NaN or infinite."""


class FaceIndexError(MeshInputError):
    """Some face indices point outside the vertex array."""


class UVError(MeshInputError):
    """UVs are missing, have the wrong shape, are non-finite or lie outside [0, 1]."""


class TextureError(ExportError):
    """The albedo or normal-map file is not a readable image, or has an unusable size."""


class OutputExistsError(ExportError):
    """The output folder already holds files and --overwrite was not given."""


class ValidationFailedError(ExportError):
    """The Khronos glTF validator reported errors or warnings for a written GLB (see report.json)."""


class ValidatorUnavailableError(ExportError):
    """Node.js or the `gltf-validator` npm package could not be found."""
