"""Ground-truth heads that look like people: the held-out shapes recon has to get right (issue 12).

Each head is a signed-distance function (smooth unions and subtractions of simple solids, metres,
+Y up, face toward +Z, subject's left ear on +X) meshed by narrow-band marching cubes at 1.5 mm,
decimated to 150k faces (< 0.15 mm from the full-resolution surface), stored in ViewSet units.
What they contain, between them:

* ears as thin cupped plates (3.5 mm, a 4.5 mm helix rim) attached only along their front part, with
  an open gap behind them (the back of the ear stands off the skull; 12-20 mm from the rear edge to
  where the ear meets the head), protruding by different angles left and right;
* eye sockets under a brow ridge with a recessed eyeball, a nose with alae and nostrils carved
  underneath, nasolabial folds, lips with a mouth slit, a chin with the undercut toward the neck;
* hair: a bun (ada), a ponytail hanging off the back with a gap to the neck (cleo), side-swept
  asymmetric hair with a fringe (ben), a crop (dev);
* a short neck whose end the low views see (ada), long necks that run out of every view (the others);
* asymmetry on every head: ear angles, heights and sizes, a deviated nose, a shifted chin, hair.

Three heads, `TUNED_ON`, were held out in session 7 and have been used to choose settings since: eli, thin
(2.5 mm) ears standing far out (37 and 42 degrees, 25 mm deep gaps behind them) under a fringe swept to the
other side, deep eye sockets, a thin long neck; fay, small ears lying nearly flat (11 and 15 degrees, a
narrow gap), a low bun at the nape, a short neck; gus, 3 mm ears at 28 and 33 degrees set low, a ponytail
hanging off to one side, a broad long neck.

Three more, built after session 8's tuning as held-out heads (hal, ivy, jon), were used in session 9 to
decide camera alignment (recon.camera_align) and are `TUNED_ON` now too: hal, a fringe swept to the other
side of eli's, ears at 34 and 24 degrees (the far one set high), a long broad neck; ivy, thin 2.8 mm ears at
30 and 38 degrees, a centred ponytail, a thin neck, deep sockets; jon, a crop, one ear far out (40 degrees)
and one flat (18), a big nose, a short neck.

Three heads built in session 10, after its settings were chosen, judged the default as held-out heads (every
case passed) and then decided that `recon --fit-masks` stays opt-in, so they are `TUNED_ON` too. kai, a high
bun off to one side, thick (4 and 3.2 mm) ears at 22 and 38 degrees set high, wide alae, a short neck; lin, a
fringe swept to -X, thin (2.6 mm) cupped ears at 33 and 28 degrees, deep sockets, a thin long neck; mo, the
most asymmetric ears (44 and 12 degrees), a ponytail hanging off to +X, a wide jaw and a broad long neck.

Three heads built in session 11 (nia, a narrow skull, long (72 mm) deeply cupped ears set low at 36 and 26
degrees, a high centred ponytail, a thin neck; oto, a big head with a crop, ears standing 3 mm off the skull at
30 and 35 degrees, a big nose, a short broad neck; pam, a bun low behind the left ear, thin (2.8 mm) cupped ears
at 31 and 39 degrees, deep sockets, a long neck) decided session 12's sweep in front, so they are `TUNED_ON`.
Three heads built in session 12 (qin, very thin (2.2 mm) flat ears far out at 45 and 40 degrees set high, a
crop, a long thin neck; rex, a flat right ear (8 degrees) and a left one out at 38, a high bun, a wide jaw, a
broad neck; sol, a small head, small cupped ears set high at 28 and 33 degrees, a ponytail off to one side, a
long thin neck) decided in session 15 that views are integrated at their own size up to 512 px, so they are
`TUNED_ON`. Three heads were built in session 15: tia, a narrow skull, thin (2.4 mm) cupped ears set low at 42
and 36 degrees, a low centred ponytail, deep sockets, a long thin neck; uri, a big head, hair swept to -X with a
fringe, ears standing 4 mm off the skull at 30 and 44 degrees, a big nose, a broad long neck; val, a small head,
a bun at the back of the crown, thick flat ears at 10 and 16 degrees (one larger), wide alae, a short neck whose
end the low views see. tia and uri decided session 16's sweep gain, so they are `TUNED_ON`. Three heads were
built in session 16: wes, hair swept to +X with a fringe, ears standing 3 mm off the skull at 26 and 38 degrees, a
deviated nose, a long neck; xia, a high ponytail falling to -X, thin (2.5 mm) cupped ears set high at 40 and 32
degrees, deep sockets, a short neck; yan, a bun low behind the right ear, ears standing 2.5 mm off at 24 and 41
degrees, a wide jaw, a broad long neck. They and val decided session 17's fold repair, so they are `TUNED_ON`.
Three heads built in session 17 are held out (`HELD_OUT`): zoe, a big swept hair volume to -X with a fringe,
standing out over both ears, ears standing 3.5 mm off the skull at 32 and 36 degrees, deep sockets, a long thin
neck; ray, a crop, a thin (2.4 mm) ear far out at 43 degrees and a flat one at 17, a big nose, a short broad neck;
kim, a low ponytail falling to +X, cupped (2.6 mm) ears set low at 29 and 37 degrees, wide alae, a long neck.

Regions ("face", "ears", "back", "crown", "neck") come from the construction: ears are points within
4 mm of an ear component, neck is where the neck solid is the nearest part below the jaw, crown is the
top of the head, face is in front of the ear roots, back is the rest (bun and ponytail included).

Meshes are cached in ``$SPIN_TO_MESH_CACHE`` (default ``~/.cache/spin-to-mesh``)/synth-heads, keyed by a
hash of the parameters and the builder version, written atomically.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from recon.synth.heads import GroundTruthHead, _orient_outward
from recon.synth.sdf import capsule, ellipse2d, ellipsoid, extrude, mesh_sdf, rot_x, rot_z, smax, smin, sphere, ssub
from recon.synth.sdf import tube as tube_sdf
from spin_io.viewset import DEFAULT_METRES_PER_UNIT

BUILDER_VERSION = 3
DEFAULT_VOXEL_M = 0.0015
FRAME_BOTTOM_M = -0.17  # framing: the box from here to the top of the head is centred on the origin
GRID_LO = (-0.13, -0.36, -0.19)
GRID_HI = (0.13, 0.16, 0.17)


def _base_params() -> dict:
    """An adult head, metres; the named heads below change parts of it."""
    return {
        "cranium": {"c": [0.0, 0.035, -0.012], "r": [0.074, 0.09, 0.098]},
        "forehead": {"c": [0.0, 0.03, 0.022], "r": [0.066, 0.072, 0.074]},
        "midface": {"c": [0.0, -0.03, 0.03], "r": [0.06, 0.068, 0.06]},
        "jaw": {"c": [0.0, -0.072, 0.028], "r": [0.052, 0.04, 0.058]},
        "jaw_angle": {"c": [0.043, -0.07, -0.004], "r": [0.011, 0.028, 0.022]},
        "chin": {"c": [0.0, -0.094, 0.072], "r": [0.021, 0.017, 0.018]},
        "cheekbone": {"c": [0.046, -0.006, 0.058], "r": [0.02, 0.015, 0.024]},
        "cheek_pad": {"c": [0.034, -0.045, 0.064], "r": [0.016, 0.018, 0.015]},
        "brow": {"a": [-0.046, 0.026, 0.078], "b": [0.046, 0.026, 0.078], "r": 0.0115, "bend": 0.012},
        "socket": {"c": [0.032, 0.009, 0.094], "r": [0.019, 0.0135, 0.02], "k": 0.006},
        "eyeball": {"c": [0.032, 0.008, 0.0745], "r": 0.0118},
        "socket_depth_delta": [0.0, 0.0],  # per side (-X, +X) extra recess of the eyeball, metres
        "nose": {
            "root": [0.0, 0.014, 0.09], "tip": [0.0, -0.029, 0.111], "r": [0.0065, 0.008],
            "tip_r": 0.0095, "ala_c": [0.0125, -0.036, 0.097], "ala_r": 0.0082, "dx": 0.0,
            "nostril_c": [0.0062, -0.0425, 0.103], "nostril_r": [0.0035, 0.0045, 0.0065],
        },
        "fold": {"a": [0.02, -0.036, 0.096], "b": [0.03, -0.067, 0.083], "r": 0.0025, "k": 0.003},
        "lips": {"upper_c": [0.0, -0.057, 0.088], "upper_r": [0.024, 0.0075, 0.0105],
                 "lower_c": [0.0, -0.0695, 0.085], "lower_r": [0.021, 0.008, 0.0095],
                 "slit_c": [0.0, -0.0625, 0.096], "slit_r": [0.023, 0.0011, 0.012], "slit_roll": 0.0},
        "neck": {"c": [0.0, -0.012], "r": [0.054, 0.056], "top": -0.04, "bottom": -0.33, "flare_from": -0.2,
                 "flare": 0.25, "k": 0.014},
        "ears": [
            # side -1 = subject's right (-X), +1 = left (+X)
            {"side": -1, "angle": 20.0, "y": -0.004, "z": 0.0, "height": 0.06, "width": 0.034, "attach": 0.014,
             "thick": 0.0035, "rim": 0.00225, "cup": 0.002, "tilt": 12.0, "stand": 0.0015},
            {"side": 1, "angle": 30.0, "y": 0.0, "z": -0.002, "height": 0.062, "width": 0.034, "attach": 0.014,
             "thick": 0.0035, "rim": 0.00225, "cup": 0.002, "tilt": 15.0, "stand": 0.0015},
        ],
        "hair": {"style": "crop", "c": [0.0, 0.042, -0.015], "r": [0.079, 0.094, 0.104], "k": 0.004,
                 "front": 0.072, "slope": 0.55, "ear_y": 0.042},
    }


def _person(name: str) -> dict:
    P = _base_params()
    P["name"] = name
    if name == "ada":  # bun, short neck (its end is in view), right ear flat, left ear out; nose to the left
        P["hair"].update(style="bun", r=[0.078, 0.093, 0.103], bun_c=[0.006, 0.088, -0.112],
                         bun_r=[0.032, 0.028, 0.027], bun_tilt=-35.0)
        P["neck"].update(bottom=-0.165, r=[0.05, 0.054])
        P["ears"][0].update(angle=18.0, width=0.032, attach=0.013)
        P["ears"][1].update(angle=30.0, width=0.033, attach=0.012, y=0.004)
        P["nose"]["dx"] = 0.002
        P["socket_depth_delta"] = [0.0, 0.001]
    elif name == "ben":  # side-swept hair and fringe on +X, long neck, right ear out, jaw shifted
        P["hair"].update(style="swept", c=[0.01, 0.046, -0.014], r=[0.084, 0.098, 0.108],
                         fringe_c=[0.028, 0.074, 0.07], fringe_r=[0.05, 0.018, 0.032], fringe_roll=-18.0)
        P["ears"][0].update(angle=32.0, width=0.036, attach=0.016, y=-0.006)
        P["ears"][1].update(angle=20.0, width=0.033, attach=0.014)
        P["chin"]["c"] = [0.003, -0.096, 0.074]
        P["jaw"]["c"] = [0.002, -0.072, 0.028]
        P["lips"]["slit_roll"] = 3.0
    elif name == "cleo":  # ponytail with a gap to the neck, long thin neck, small ears, eye sockets deep
        P["hair"].update(style="ponytail", r=[0.078, 0.093, 0.103],
                         tail=[[0.0, 0.075, -0.112], [0.004, 0.03, -0.128], [0.01, -0.03, -0.124],
                               [0.016, -0.09, -0.1], [0.02, -0.135, -0.089]],
                         tail_r=[0.016, 0.017, 0.015, 0.012, 0.008])
        P["neck"].update(r=[0.047, 0.05])
        P["ears"][0].update(angle=26.0, width=0.03, height=0.056, attach=0.012)
        P["ears"][1].update(angle=18.0, width=0.03, height=0.055, attach=0.012, y=-0.006)
        P["socket_depth_delta"] = [0.0015, 0.0]
        P["nose"]["dx"] = -0.0015
        P["chin"]["r"] = [0.018, 0.016, 0.017]
    elif name == "dev":  # crop, long neck, prominent ears of different heights, broad jaw, crooked nose
        P["hair"].update(r=[0.077, 0.092, 0.102], front=0.068)
        P["ears"][0].update(angle=36.0, width=0.036, height=0.066, attach=0.016, y=-0.01)
        P["ears"][1].update(angle=24.0, width=0.035, height=0.064, attach=0.015, y=0.002)
        P["jaw"]["r"] = [0.056, 0.042, 0.058]
        P["nose"]["dx"] = 0.003
        P["nose"]["tip"] = [0.003, -0.029, 0.113]
        P["neck"].update(r=[0.058, 0.06])
    elif name == "eli":  # held out: thin, far-protruding ears, fringe swept to -X, deep sockets, thin long neck
        P["hair"].update(style="swept", c=[-0.008, 0.044, -0.014], r=[0.082, 0.096, 0.106],
                         fringe_c=[-0.024, 0.072, 0.072], fringe_r=[0.046, 0.016, 0.03], fringe_roll=15.0)
        P["ears"][0].update(angle=42.0, width=0.038, height=0.07, attach=0.011, thick=0.0025, rim=0.0018,
                            cup=0.003, tilt=8.0, stand=0.002, y=-0.002)
        P["ears"][1].update(angle=37.0, width=0.037, height=0.068, attach=0.012, thick=0.0025, rim=0.0018,
                            cup=0.003, tilt=20.0, stand=0.002, y=0.004)
        P["socket_depth_delta"] = [0.002, 0.0015]
        P["nose"].update(tip=[-0.002, -0.031, 0.116], tip_r=0.0105)
        P["neck"].update(r=[0.045, 0.048])
    elif name == "fay":  # held out: small ears flat to the skull (narrow gap), low bun at the nape, short neck
        P["hair"].update(style="bun", r=[0.077, 0.092, 0.102], bun_c=[-0.004, 0.005, -0.112],
                         bun_r=[0.03, 0.026, 0.024], bun_tilt=10.0)
        P["ears"][0].update(angle=11.0, width=0.029, height=0.052, attach=0.012, thick=0.004, tilt=10.0)
        P["ears"][1].update(angle=15.0, width=0.028, height=0.05, attach=0.011, thick=0.004, tilt=14.0, y=-0.005)
        P["neck"].update(bottom=-0.17, r=[0.048, 0.05])
        P["chin"].update(c=[-0.002, -0.097, 0.075], r=[0.02, 0.018, 0.019])
        P["lips"]["slit_roll"] = -4.0
    elif name == "gus":  # held out: 3 mm ears at 28/33 degrees set low, ponytail off to one side, broad neck
        P["hair"].update(style="ponytail", r=[0.08, 0.095, 0.105],
                         tail=[[-0.01, 0.07, -0.114], [-0.018, 0.025, -0.13], [-0.026, -0.035, -0.126],
                               [-0.03, -0.1, -0.106]],
                         tail_r=[0.017, 0.018, 0.015, 0.011])
        P["ears"][0].update(angle=28.0, width=0.035, height=0.064, attach=0.013, thick=0.003, rim=0.002,
                            tilt=18.0, y=-0.012)
        P["ears"][1].update(angle=33.0, width=0.036, height=0.066, attach=0.012, thick=0.003, rim=0.002,
                            tilt=10.0, y=-0.008, z=0.003)
        P["neck"].update(r=[0.06, 0.062])
        P["nose"].update(dx=-0.002, tip=[-0.002, -0.03, 0.114])
        P["socket_depth_delta"] = [0.001, 0.002]
    elif name == "hal":  # fringe swept to +X, ears 34/24 degrees, the right one high; long broad neck
        P["hair"].update(style="swept", c=[0.006, 0.045, -0.016], r=[0.083, 0.097, 0.107],
                         fringe_c=[0.03, 0.07, 0.068], fringe_r=[0.048, 0.017, 0.03], fringe_roll=-12.0)
        P["ears"][0].update(angle=34.0, width=0.037, height=0.066, attach=0.013, thick=0.003, rim=0.002,
                            tilt=16.0, y=0.006)
        P["ears"][1].update(angle=24.0, width=0.034, height=0.063, attach=0.014, tilt=12.0, y=-0.004)
        P["jaw"]["r"] = [0.055, 0.041, 0.059]
        P["neck"].update(r=[0.057, 0.06])
        P["nose"]["dx"] = 0.0015
    elif name == "ivy":  # thin 2.8 mm ears at 30/38 degrees, centred ponytail, thin neck, deep sockets
        P["hair"].update(style="ponytail", r=[0.077, 0.092, 0.102],
                         tail=[[0.0, 0.078, -0.11], [0.0, 0.035, -0.126], [-0.004, -0.02, -0.124],
                               [-0.008, -0.08, -0.104]],
                         tail_r=[0.015, 0.016, 0.014, 0.01])
        P["ears"][0].update(angle=30.0, width=0.032, height=0.058, attach=0.012, thick=0.0028, rim=0.0019,
                            cup=0.0025, tilt=14.0)
        P["ears"][1].update(angle=38.0, width=0.033, height=0.06, attach=0.011, thick=0.0028, rim=0.0019,
                            cup=0.0025, tilt=9.0, y=-0.003)
        P["socket_depth_delta"] = [0.0018, 0.0018]
        P["neck"].update(r=[0.046, 0.049])
        P["chin"]["r"] = [0.019, 0.016, 0.017]
    elif name == "jon":  # crop, ears 40/18 degrees (one far out, one flat), big nose, short neck
        P["hair"].update(r=[0.078, 0.093, 0.103], front=0.07)
        P["ears"][0].update(angle=18.0, width=0.035, height=0.064, attach=0.014, tilt=12.0, y=0.002)
        P["ears"][1].update(angle=40.0, width=0.038, height=0.068, attach=0.013, thick=0.003, rim=0.002,
                            cup=0.0028, tilt=11.0, y=-0.006)
        P["nose"].update(tip=[0.001, -0.032, 0.118], tip_r=0.011, dx=0.001)
        P["neck"].update(bottom=-0.175, r=[0.052, 0.055])
        P["lips"]["slit_roll"] = 2.0
    elif name == "kai":  # held out: a high bun off to -X, thick ears at 22/38 degrees set high, short neck
        P["hair"].update(style="bun", r=[0.08, 0.094, 0.104], bun_c=[-0.018, 0.112, -0.07],
                         bun_r=[0.03, 0.027, 0.029], bun_tilt=-55.0)
        P["ears"][0].update(angle=22.0, width=0.034, height=0.063, attach=0.015, thick=0.004, tilt=14.0, y=0.006)
        P["ears"][1].update(angle=38.0, width=0.037, height=0.067, attach=0.012, thick=0.0032, rim=0.0021,
                            tilt=9.0, y=0.004)
        P["neck"].update(bottom=-0.16, r=[0.053, 0.056])
        P["nose"].update(dx=-0.002, ala_r=0.0092)
        P["chin"]["c"] = [-0.003, -0.095, 0.073]
    elif name == "lin":  # held out: fringe swept to -X, thin 2.6 mm cupped ears at 33/28, deep sockets, thin neck
        P["hair"].update(style="swept", c=[-0.006, 0.045, -0.015], r=[0.081, 0.095, 0.105],
                         fringe_c=[-0.03, 0.073, 0.071], fringe_r=[0.052, 0.017, 0.031], fringe_roll=20.0)
        P["ears"][0].update(angle=33.0, width=0.034, height=0.061, attach=0.012, thick=0.0026, rim=0.0019,
                            cup=0.003, tilt=13.0, y=-0.003)
        P["ears"][1].update(angle=28.0, width=0.035, height=0.062, attach=0.012, thick=0.0026, rim=0.0019,
                            cup=0.003, tilt=17.0, y=0.001)
        P["socket_depth_delta"] = [0.002, 0.0022]
        P["neck"].update(r=[0.044, 0.047])
        P["lips"]["slit_roll"] = -3.0
    elif name == "mo":  # held out: ears 44 and 12 degrees, a ponytail off to +X, broad long neck, wide jaw
        P["hair"].update(style="ponytail", r=[0.079, 0.094, 0.104],
                         tail=[[0.012, 0.08, -0.108], [0.024, 0.04, -0.128], [0.034, -0.015, -0.126],
                               [0.04, -0.075, -0.11], [0.042, -0.12, -0.094]],
                         tail_r=[0.016, 0.017, 0.015, 0.012, 0.009])
        P["ears"][0].update(angle=44.0, width=0.037, height=0.068, attach=0.012, thick=0.003, rim=0.002,
                            cup=0.0028, tilt=10.0, y=-0.004)
        P["ears"][1].update(angle=12.0, width=0.031, height=0.058, attach=0.013, thick=0.0038, tilt=15.0, y=0.002)
        P["jaw"]["r"] = [0.057, 0.042, 0.06]
        P["neck"].update(r=[0.059, 0.062])
        P["nose"].update(dx=0.0025, tip=[0.0025, -0.03, 0.112])
        P["socket_depth_delta"] = [0.001, 0.0]
    elif name == "nia":  # held out: long ears set low at 36/26, a narrow skull, a high centred ponytail, thin neck
        P["cranium"].update(r=[0.07, 0.092, 0.1])
        P["forehead"].update(r=[0.063, 0.073, 0.074])
        P["hair"].update(style="ponytail", r=[0.075, 0.096, 0.105],
                         tail=[[0.0, 0.11, -0.085], [0.002, 0.085, -0.13], [0.0, 0.03, -0.14],
                               [-0.004, -0.03, -0.128], [-0.006, -0.085, -0.108]],
                         tail_r=[0.015, 0.016, 0.015, 0.012, 0.009])
        P["ears"][0].update(angle=36.0, width=0.04, height=0.072, attach=0.011, thick=0.003, rim=0.002,
                            cup=0.0035, tilt=20.0, y=-0.014)
        P["ears"][1].update(angle=26.0, width=0.039, height=0.07, attach=0.012, thick=0.003, rim=0.002,
                            cup=0.0035, tilt=6.0, y=-0.012)
        P["socket_depth_delta"] = [0.0025, 0.001]
        P["neck"].update(r=[0.045, 0.047], k=0.012)
        P["nose"].update(dx=-0.001, tip=[-0.001, -0.03, 0.109], tip_r=0.009)
    elif name == "oto":  # held out: a big head with a crop, ears standing off the skull at 30/35, short broad neck
        P["cranium"].update(r=[0.078, 0.094, 0.103])
        P["forehead"].update(r=[0.069, 0.075, 0.077])
        P["hair"].update(r=[0.082, 0.098, 0.108], front=0.075)
        P["ears"][0].update(angle=30.0, width=0.037, height=0.067, attach=0.013, thick=0.0034, rim=0.0022,
                            tilt=10.0, stand=0.003, y=0.0)
        P["ears"][1].update(angle=35.0, width=0.038, height=0.069, attach=0.012, thick=0.0034, rim=0.0022,
                            tilt=16.0, stand=0.003, y=-0.007)
        P["jaw"].update(r=[0.058, 0.043, 0.06])
        P["neck"].update(bottom=-0.165, r=[0.061, 0.063])
        P["nose"].update(tip=[0.002, -0.033, 0.119], tip_r=0.0115, ala_r=0.009, dx=0.002)
        P["lips"]["slit_roll"] = -2.0
    elif name == "pam":  # held out: a bun low behind the left ear, thin cupped ears at 39/31, deep sockets, long neck
        P["hair"].update(style="bun", r=[0.078, 0.093, 0.103], bun_c=[0.03, -0.005, -0.105],
                         bun_r=[0.028, 0.025, 0.026], bun_tilt=20.0)
        P["ears"][0].update(angle=31.0, width=0.034, height=0.062, attach=0.012, thick=0.0028, rim=0.0019,
                            cup=0.003, tilt=12.0, y=-0.002)
        P["ears"][1].update(angle=39.0, width=0.036, height=0.064, attach=0.012, thick=0.0028, rim=0.0019,
                            cup=0.003, tilt=15.0, y=0.003)
        P["socket_depth_delta"] = [0.002, 0.0025]
        P["neck"].update(r=[0.047, 0.05])
        P["chin"].update(c=[0.002, -0.095, 0.07], r=[0.019, 0.017, 0.017])
    elif name == "qin":  # held out: very thin (2.2 mm) flat ears far out at 45/40, set high, a crop, long thin neck
        P["hair"].update(r=[0.077, 0.092, 0.102], front=0.068)
        P["ears"][0].update(angle=45.0, width=0.037, height=0.066, attach=0.011, thick=0.0022, rim=0.0016,
                            cup=0.001, tilt=8.0, y=0.006)
        P["ears"][1].update(angle=40.0, width=0.036, height=0.065, attach=0.011, thick=0.0022, rim=0.0016,
                            cup=0.001, tilt=18.0, y=0.008)
        P["neck"].update(r=[0.044, 0.046], k=0.012)
        P["socket_depth_delta"] = [0.0015, 0.0015]
        P["nose"].update(dx=-0.002, tip=[-0.002, -0.031, 0.113], tip_r=0.0088)
    elif name == "rex":  # held out: a flat right ear (8) and a left one out at 38, a high bun, wide jaw, broad neck
        P["hair"].update(style="bun", r=[0.08, 0.095, 0.105], bun_c=[-0.004, 0.13, -0.05],
                         bun_r=[0.03, 0.026, 0.03], bun_tilt=-10.0)
        P["ears"][0].update(angle=8.0, width=0.033, height=0.063, attach=0.015, thick=0.004, tilt=14.0, y=-0.006)
        P["ears"][1].update(angle=38.0, width=0.038, height=0.066, attach=0.012, thick=0.0029, rim=0.002,
                            cup=0.003, tilt=10.0, y=-0.002)
        P["jaw"]["r"] = [0.058, 0.043, 0.06]
        P["jaw_angle"].update(c=[0.047, -0.072, -0.004])
        P["neck"].update(r=[0.06, 0.063], bottom=-0.2)
        P["chin"].update(c=[-0.002, -0.097, 0.073])
    elif name == "sol":  # held out: a small head, small cupped ears set high at 28/33, a side ponytail, long neck
        P["cranium"].update(r=[0.07, 0.086, 0.093])
        P["forehead"].update(r=[0.062, 0.068, 0.07])
        P["hair"].update(style="ponytail", r=[0.074, 0.09, 0.099],
                         tail=[[-0.02, 0.06, -0.1], [-0.035, 0.02, -0.118], [-0.045, -0.03, -0.115],
                               [-0.05, -0.08, -0.1], [-0.052, -0.12, -0.085]],
                         tail_r=[0.014, 0.015, 0.013, 0.011, 0.008])
        P["ears"][0].update(angle=28.0, width=0.03, height=0.054, attach=0.011, thick=0.003, rim=0.002,
                            cup=0.0032, tilt=16.0, y=0.01)
        P["ears"][1].update(angle=33.0, width=0.031, height=0.055, attach=0.011, thick=0.003, rim=0.002,
                            cup=0.0032, tilt=11.0, y=0.012)
        P["socket_depth_delta"] = [0.0025, 0.002]
        P["neck"].update(r=[0.043, 0.045], k=0.012, bottom=-0.34)
    elif name == "tia":  # held out: a narrow skull, thin (2.4 mm) cupped ears set low at 42/36, a low centred
        # ponytail, deep sockets, a long thin neck
        P["cranium"].update(r=[0.071, 0.09, 0.099])
        P["forehead"].update(r=[0.064, 0.071, 0.073])
        P["hair"].update(style="ponytail", r=[0.076, 0.092, 0.102],
                         tail=[[0.0, 0.0, -0.112], [0.001, -0.04, -0.122], [0.002, -0.08, -0.118],
                               [0.003, -0.12, -0.106], [0.004, -0.155, -0.095]],
                         tail_r=[0.016, 0.015, 0.013, 0.011, 0.008])
        P["ears"][0].update(angle=42.0, width=0.035, height=0.063, attach=0.011, thick=0.0024, rim=0.0017,
                            cup=0.0034, tilt=14.0, y=-0.012)
        P["ears"][1].update(angle=36.0, width=0.036, height=0.064, attach=0.012, thick=0.0024, rim=0.0017,
                            cup=0.0034, tilt=19.0, y=-0.01)
        P["socket_depth_delta"] = [0.003, 0.0025]
        P["neck"].update(r=[0.044, 0.047], k=0.012, bottom=-0.34)
        P["nose"].update(dx=0.0015, tip=[0.0015, -0.031, 0.11])
    elif name == "uri":  # held out: a big head, hair swept to -X with a fringe, ears standing 4 mm off the skull
        # at 30/44, a big nose, a broad long neck
        P["cranium"].update(r=[0.077, 0.093, 0.102])
        P["forehead"].update(r=[0.068, 0.074, 0.076])
        P["hair"].update(style="swept", c=[-0.012, 0.046, -0.014], r=[0.085, 0.099, 0.109],
                         fringe_c=[-0.03, 0.073, 0.07], fringe_r=[0.05, 0.018, 0.032], fringe_roll=20.0)
        P["ears"][0].update(angle=30.0, width=0.037, height=0.068, attach=0.013, thick=0.0032, rim=0.0021,
                            tilt=12.0, stand=0.004, y=-0.004)
        P["ears"][1].update(angle=44.0, width=0.038, height=0.068, attach=0.012, thick=0.0032, rim=0.0021,
                            tilt=9.0, stand=0.004, y=-0.001)
        P["jaw"].update(r=[0.057, 0.042, 0.06])
        P["neck"].update(r=[0.06, 0.062], bottom=-0.3)
        P["nose"].update(tip=[-0.002, -0.034, 0.12], tip_r=0.0115, ala_r=0.0088, dx=-0.002)
    elif name == "val":  # held out: a small head, a bun at the back of the crown, thick flat ears (10/16), one
        # larger, wide alae, a short neck whose end the low views see
        P["cranium"].update(r=[0.07, 0.087, 0.095])
        P["forehead"].update(r=[0.063, 0.069, 0.071])
        P["hair"].update(style="bun", r=[0.075, 0.091, 0.1], bun_c=[0.003, 0.11, -0.085],
                         bun_r=[0.033, 0.029, 0.03], bun_tilt=-25.0)
        P["ears"][0].update(angle=10.0, width=0.032, height=0.06, attach=0.015, thick=0.0042, tilt=10.0, y=0.002)
        P["ears"][1].update(angle=16.0, width=0.036, height=0.067, attach=0.015, thick=0.0042, tilt=14.0, y=-0.003)
        P["nose"].update(ala_r=0.0095, ala_c=[0.014, -0.036, 0.096])
        P["neck"].update(r=[0.05, 0.053], bottom=-0.16)
    elif name == "wes":  # held out: hair swept to +X with a fringe, ears standing 3 mm off the skull at 26/38, a
        # deviated nose, a long neck
        P["hair"].update(style="swept", c=[0.011, 0.045, -0.015], r=[0.083, 0.097, 0.107],
                         fringe_c=[0.026, 0.073, 0.07], fringe_r=[0.048, 0.017, 0.031], fringe_roll=-16.0)
        P["ears"][0].update(angle=26.0, width=0.035, height=0.064, attach=0.013, thick=0.003, rim=0.002,
                            tilt=15.0, stand=0.003, y=-0.002)
        P["ears"][1].update(angle=38.0, width=0.037, height=0.066, attach=0.012, thick=0.003, rim=0.002,
                            cup=0.0028, tilt=10.0, stand=0.003, y=0.002)
        P["nose"].update(dx=0.0025, tip=[0.0025, -0.03, 0.114])
        P["neck"].update(r=[0.05, 0.053], bottom=-0.32)
    elif name == "xia":  # held out: a high ponytail falling to -X, thin (2.5 mm) cupped ears set high at 40/32,
        # deep sockets, a short neck whose end the low views see
        P["cranium"].update(r=[0.072, 0.089, 0.097])
        P["hair"].update(style="ponytail", r=[0.076, 0.093, 0.102],
                         tail=[[-0.004, 0.115, -0.08], [-0.015, 0.09, -0.125], [-0.03, 0.04, -0.132],
                               [-0.042, -0.02, -0.12], [-0.048, -0.07, -0.1]],
                         tail_r=[0.015, 0.016, 0.014, 0.012, 0.009])
        P["ears"][0].update(angle=40.0, width=0.035, height=0.062, attach=0.011, thick=0.0025, rim=0.0018,
                            cup=0.0032, tilt=10.0, y=0.008)
        P["ears"][1].update(angle=32.0, width=0.034, height=0.061, attach=0.012, thick=0.0025, rim=0.0018,
                            cup=0.0032, tilt=17.0, y=0.01)
        P["socket_depth_delta"] = [0.0025, 0.003]
        P["neck"].update(r=[0.047, 0.05], bottom=-0.17)
    elif name == "yan":  # held out: a bun low behind the right ear, ears standing 2.5 mm off at 24/41, a wide
        # jaw, a broad long neck
        P["hair"].update(style="bun", r=[0.079, 0.094, 0.104], bun_c=[-0.032, -0.002, -0.104],
                         bun_r=[0.029, 0.026, 0.027], bun_tilt=-18.0)
        P["ears"][0].update(angle=24.0, width=0.034, height=0.063, attach=0.013, thick=0.0033, rim=0.0021,
                            tilt=13.0, stand=0.0025, y=-0.003)
        P["ears"][1].update(angle=41.0, width=0.037, height=0.066, attach=0.012, thick=0.0028, rim=0.0019,
                            cup=0.003, tilt=11.0, stand=0.0025, y=0.001)
        P["jaw"]["r"] = [0.057, 0.042, 0.06]
        P["jaw_angle"].update(c=[0.046, -0.071, -0.004])
        P["neck"].update(r=[0.058, 0.061], bottom=-0.3)
    elif name == "zoe":  # held out: a big swept hair volume to -X with a fringe, standing out over both ears,
        # ears standing 3.5 mm off the skull at 32/36, deep sockets, a long thin neck
        P["hair"].update(style="swept", c=[-0.01, 0.046, -0.016], r=[0.086, 0.1, 0.11],
                         fringe_c=[-0.027, 0.074, 0.071], fringe_r=[0.05, 0.018, 0.032], fringe_roll=17.0)
        P["ears"][0].update(angle=32.0, width=0.035, height=0.063, attach=0.012, thick=0.003, rim=0.002,
                            cup=0.0026, tilt=12.0, stand=0.0035, y=0.0)
        P["ears"][1].update(angle=36.0, width=0.036, height=0.065, attach=0.012, thick=0.003, rim=0.002,
                            cup=0.0026, tilt=14.0, stand=0.0035, y=-0.002)
        P["socket_depth_delta"] = [0.003, 0.0025]
        P["neck"].update(r=[0.047, 0.05], bottom=-0.32)
    elif name == "ray":  # held out: a crop, a thin (2.4 mm) left ear far out at 43 and a flat right one at 17, a
        # big nose, a short broad neck whose end the low views see
        P["cranium"].update(r=[0.076, 0.092, 0.1])
        P["ears"][0].update(angle=17.0, width=0.034, height=0.064, attach=0.015, thick=0.0038, tilt=10.0, y=-0.002)
        P["ears"][1].update(angle=43.0, width=0.037, height=0.067, attach=0.011, thick=0.0024, rim=0.0018,
                            cup=0.003, tilt=13.0, stand=0.002, y=0.003)
        P["nose"].update(tip=[0.0, -0.033, 0.121], tip_r=0.011, ala_r=0.009, r=[0.0075, 0.009])
        P["neck"].update(r=[0.058, 0.06], bottom=-0.17)
    elif name == "kim":  # held out: a low ponytail falling to +X, cupped (2.6 mm) ears set low at 29/37, wide
        # alae, a long neck
        P["hair"].update(style="ponytail", r=[0.078, 0.093, 0.103],
                         tail=[[0.004, 0.06, -0.1], [0.02, 0.03, -0.118], [0.035, -0.01, -0.115],
                               [0.045, -0.06, -0.1], [0.05, -0.11, -0.085]],
                         tail_r=[0.016, 0.016, 0.014, 0.012, 0.009])
        P["ears"][0].update(angle=29.0, width=0.034, height=0.062, attach=0.012, thick=0.0026, rim=0.0019,
                            cup=0.003, tilt=12.0, y=-0.011)
        P["ears"][1].update(angle=37.0, width=0.035, height=0.063, attach=0.012, thick=0.0026, rim=0.0019,
                            cup=0.003, tilt=15.0, y=-0.009)
        P["nose"].update(ala_r=0.0094, ala_c=[0.0145, -0.036, 0.096])
        P["neck"].update(r=[0.051, 0.054], bottom=-0.31)
    else:
        raise KeyError(f"unknown head {name!r}; choose from {PEOPLE + TUNED_ON + HELD_OUT}")
    return P


PEOPLE = ("ada", "ben", "cleo", "dev")
# Held out in session 7 (eli, fay, gus), 8 (hal, ivy, jon), 10 (kai, lin, mo), 11 (nia, oto, pam), 12 (qin, rex,
# sol), 15 (tia, uri, val) or 16 (wes, xia, yan) and used to choose settings since (the sweep of recon.sweep, its
# search in front and its gain; camera alignment; mask fitting; the depth integration's size; the fold repair): no
# longer held out. Not in PEOPLE, so the tests do not pay for building them.
TUNED_ON = ("eli", "fay", "gus", "hal", "ivy", "jon", "kai", "lin", "mo", "nia", "oto", "pam", "qin", "rex", "sol",
            "tia", "uri", "val", "wes", "xia", "yan")
# Heads built after the last round of tuning and only checked against (session 17).
HELD_OUT: tuple[str, ...] = ("zoe", "ray", "kim")
_CODE_DIGEST = hashlib.sha256(
    Path(__file__).read_bytes() + Path(__file__).with_name("sdf.py").read_bytes()
).hexdigest()[:16]


def _ear_frame(E: dict, P: dict) -> dict:
    """Root point and axes of one ear: u runs backward along the plate, v up, n out of the plate."""
    s = E["side"]
    a = np.radians(E["angle"])
    cr = P["cranium"]
    # the skull's side at the ear (cranium ellipsoid at the root's y, z), moved out by the ear's stand-off
    q = ((E["y"] - cr["c"][1]) / cr["r"][1]) ** 2 + ((E["z"] - cr["c"][2]) / cr["r"][2]) ** 2
    x_root = cr["c"][0] + s * (cr["r"][0] * np.sqrt(max(1.0 - q, 0.0)) + E["stand"])
    root = np.array([x_root, E["y"], E["z"]])
    tilt = rot_x(-E["tilt"])  # the ear leans back at its top
    u = np.array([s * np.sin(a), 0.0, -np.cos(a)])
    v = tilt @ np.array([0.0, 1.0, 0.0])
    n = np.cross(u, v) * s  # outward (+X side for s = +1)
    n /= np.linalg.norm(n)
    v = np.cross(n, u) * s
    return {"root": root, "u": u, "v": v, "n": n}


def _ear_sdf(p: np.ndarray, E: dict, P: dict) -> np.ndarray:
    """A cupped plate with a rolled rim and a lobe, filled solid to the skull only along its front part."""
    F = {k: val.astype(p.dtype) for k, val in _ear_frame(E, P).items()}
    q = p - F["root"]
    u, v, w = q @ F["u"], q @ F["v"], q @ F["n"]
    a, b = E["width"] / 2, E["height"] / 2
    uc = u - a
    rho2 = np.clip((uc / a) ** 2 + (v / b) ** 2, 0.0, 1.0)
    mid = -E["cup"] * (1.0 - rho2)  # the middle sits closer to the skull: a cup open to the outside
    outline = ellipse2d(uc, v, a, b)
    plate = extrude(outline, w - mid, E["thick"] / 2) * 0.9
    rim = np.sqrt((outline + E["rim"]) ** 2 + (w - 0.0008) ** 2) - E["rim"]
    d = np.minimum(plate, rim)
    lobe = ellipsoid(q, F["u"] * (a * 0.8) - F["v"] * (b * 0.78) - F["n"] * 0.001,
                     [0.009, 0.0095, 0.0035], np.stack([F["u"], F["v"], F["n"]], 1))
    d = smin(d, lobe, 0.003)
    # root: solid from the plate back to (into) the skull over the front `attach` metres
    root = np.maximum.reduce([u - E["attach"], -u - 0.004, outline + 0.002, w - mid, -w - 0.03])
    d = smin(d, root, 0.002)
    # tragus: a small bump in front of the ear canal
    tragus = ellipsoid(q, F["u"] * 0.004 - F["v"] * 0.006 + F["n"] * 0.003, [0.003, 0.005, 0.003],
                       np.stack([F["u"], F["v"], F["n"]], 1))
    return np.minimum(d, tragus)


def _hair_sdf(p: np.ndarray, P: dict) -> np.ndarray:
    """Hair volume above a hairline that rises over the ears (the ear gaps stay bare)."""
    H = P["hair"]
    d = ellipsoid(p, H["c"], H["r"])
    y, z = p[:, 1], p[:, 2]
    ear_z = 0.5 * (P["ears"][0]["z"] + P["ears"][1]["z"]) - 0.015
    plane = H["front"] + H["slope"] * (z - 0.085)  # forehead high, nape low
    over_ear = H["ear_y"] - 2.5 * np.maximum(np.abs(z - ear_z) - 0.035, 0.0)
    slope = np.where(plane >= over_ear, H["slope"], np.where(np.abs(z - ear_z) > 0.035, 2.5, 0.0))
    line = np.maximum(plane, over_ear)
    d = smax(d, (line - y) / np.sqrt(1.0 + slope**2), 0.004)
    if H["style"] == "swept":
        fringe = ellipsoid(p, H["fringe_c"], H["fringe_r"], rot_x(8.0) @ rot_z(H["fringe_roll"]))
        d = smin(d, fringe, 0.01)
    return d


def _extra_hair(p: np.ndarray, P: dict) -> np.ndarray | None:
    """Bun or ponytail: attached to the head but standing off it (undercuts, gaps)."""
    H = P["hair"]
    if H["style"] == "bun":
        return ellipsoid(p, H["bun_c"], H["bun_r"], rot_x(H["bun_tilt"]))
    if H["style"] == "ponytail":
        tie = sphere(p, H["tail"][0], H["tail_r"][0] * 0.8)
        return np.minimum(tube_sdf(p, H["tail"], H["tail_r"], 0.004), tie)
    return None


FAR = 1.0  # metres: the value of a part at points where it cannot matter (see person_parts)


def _masked(fn, p: np.ndarray, mask: np.ndarray, fill: float = FAR) -> np.ndarray:
    out = np.full(len(p), fill, p.dtype)
    if mask.any():
        out[mask] = fn(p[mask])
    return out


def _face_sdf(p: np.ndarray, P: dict) -> np.ndarray:
    """Skull and face: cranium, forehead, midface, jaw, chin, cheeks; then the features in the face box only."""
    d = _skull_sdf(p, P)
    # brow, sockets, eyes, nose, folds and lips all lie within x +-0.08, y -0.125..0.065, z > 0.035: 25 mm
    # or more from any point outside that box, further than any of their blend widths reach
    box = (p[:, 2] > 0.035) & (np.abs(p[:, 0]) < 0.08) & (p[:, 1] > -0.125) & (p[:, 1] < 0.065)
    if box.any():
        d[box] = _features_sdf(d[box], p[box], P)
    return d


def _skull_sdf(p: np.ndarray, P: dict) -> np.ndarray:
    d = ellipsoid(p, P["cranium"]["c"], P["cranium"]["r"])
    d = smin(d, ellipsoid(p, P["forehead"]["c"], P["forehead"]["r"]), 0.02)
    d = smin(d, ellipsoid(p, P["midface"]["c"], P["midface"]["r"]), 0.02)
    d = smin(d, ellipsoid(p, P["jaw"]["c"], P["jaw"]["r"]), 0.02)
    for s in (-1, 1):
        m = np.array([s, 1, 1])
        d = smin(d, ellipsoid(p, np.array(P["jaw_angle"]["c"]) * m, P["jaw_angle"]["r"]), 0.015)
        d = smin(d, ellipsoid(p, np.array(P["cheekbone"]["c"]) * m, P["cheekbone"]["r"]), 0.012)
        d = smin(d, ellipsoid(p, np.array(P["cheek_pad"]["c"]) * m, P["cheek_pad"]["r"]), 0.012)
    return smin(d, ellipsoid(p, P["chin"]["c"], P["chin"]["r"]), 0.012)


def _features_sdf(d: np.ndarray, p: np.ndarray, P: dict) -> np.ndarray:
    """Brow, eye sockets with eyeballs, nose with nostrils, nasolabial folds, lips, added to skull distance d."""
    B = P["brow"]
    mid = 0.5 * (np.array(B["a"]) + np.array(B["b"])) + [0.0, 0.0, B["bend"] * 0.3]
    brow = np.minimum(capsule(p, B["a"], mid, B["r"] * 0.85, B["r"]), capsule(p, mid, B["b"], B["r"], B["r"] * 0.85))
    d = smin(d, brow, 0.012)
    # eye sockets carved under the brow, each with an eyeball set back into it
    for i, s in enumerate((-1, 1)):
        m = np.array([s, 1, 1])
        S = P["socket"]
        d = ssub(d, ellipsoid(p, np.array(S["c"]) * m, S["r"]), S["k"])
        eye_c = np.array(P["eyeball"]["c"]) * m - [0.0, 0.0, P["socket_depth_delta"][i]]
        d = smin(d, sphere(p, eye_c, P["eyeball"]["r"]), 0.002)
    # nose: bridge, tip, alae; nostrils carved from below
    N = P["nose"]
    dx = np.array([N["dx"], 0.0, 0.0])
    nose = capsule(p, np.array(N["root"]) + dx * 0.3, np.array(N["tip"]) + dx, N["r"][0], N["r"][1])
    nose = smin(nose, sphere(p, np.array(N["tip"]) + dx + [0.0, -0.001, -0.001], N["tip_r"]), 0.006)
    for s in (-1, 1):
        nose = smin(nose, sphere(p, np.array(N["ala_c"]) * [s, 1, 1] + dx, N["ala_r"]), 0.005)
    d = smin(d, nose, 0.006)
    for s in (-1, 1):
        d = ssub(d, ellipsoid(p, np.array(N["nostril_c"]) * [s, 1, 1] + dx, N["nostril_r"], rot_x(-25.0)), 0.0015)
    # nasolabial folds: shallow grooves from the alae to the mouth corners
    Fo = P["fold"]
    for s in (-1, 1):
        m = np.array([s, 1, 1])
        d = ssub(d, capsule(p, np.array(Fo["a"]) * m, np.array(Fo["b"]) * m, Fo["r"]), Fo["k"])
    # lips and the mouth slit between them
    L = P["lips"]
    lips = np.minimum(ellipsoid(p, L["upper_c"], L["upper_r"]), ellipsoid(p, L["lower_c"], L["lower_r"]))
    d = smin(d, lips, 0.006)
    d = ssub(d, ellipsoid(p, L["slit_c"], L["slit_r"], rot_z(L["slit_roll"])), 0.001)
    return d


def _neck_sdf(p: np.ndarray, P: dict) -> np.ndarray:
    """An elliptic neck that flares toward the shoulders, capped flat at its bottom."""
    Nk = P["neck"]
    y = p[:, 1]
    grow = 1.0 + Nk["flare"] * np.clip((Nk["flare_from"] - y) / 0.13, 0.0, 1.0) ** 2
    rx, rz = Nk["r"][0] * grow, Nk["r"][1] * grow
    radial = np.sqrt((p[:, 0] / rx) ** 2 + ((p[:, 2] - Nk["c"][1]) / rz) ** 2) - 1.0
    slab = np.maximum(Nk["bottom"] - y, y - Nk["top"])
    return np.maximum(radial * min(Nk["r"]), slab)


def person_parts(p: np.ndarray, P: dict) -> dict[str, np.ndarray]:
    """Signed distance (metres) of each part at points in metres (head-local coordinates)."""
    # Parts are evaluated only where they can shape the surface; elsewhere they read FAR (1 m), which
    # leaves every smooth union unchanged. Below y = -0.15 only the neck and a ponytail reach.
    high = p[:, 1] > -0.15
    ears = np.full(len(p), FAR, p.dtype)
    for E in P["ears"]:
        near = high & (np.linalg.norm(p - _ear_frame(E, P)["root"], axis=1) < 0.065)
        ears = np.minimum(ears, _masked(lambda q, E=E: _ear_sdf(q, E, P), p, near))
    parts = {
        "face": _masked(lambda q: _face_sdf(q, P), p, high),
        "hair": _masked(lambda q: _hair_sdf(q, P), p, high),
        "neck": _neck_sdf(p, P),
        "ears": ears,
    }
    extra = _extra_hair(p, P)
    parts["extra_hair"] = extra if extra is not None else np.full(len(p), FAR, p.dtype)
    return parts


def person_sdf(p: np.ndarray, P: dict) -> np.ndarray:
    """Signed distance (metres, negative inside) of the whole head."""
    parts = person_parts(p, P)
    return _combine(parts, P)


def _combine(parts: dict[str, np.ndarray], P: dict) -> np.ndarray:
    d = smin(parts["face"], parts["hair"], P["hair"]["k"])
    if (parts["extra_hair"] < FAR).any():
        d = smin(d, parts["extra_hair"], 0.006)
    d = smin(d, parts["neck"], P["neck"]["k"])
    return smin(d, parts["ears"], 0.0025)


def person_regions(p: np.ndarray, P: dict) -> np.ndarray:
    """Region index (heads.REGIONS order) per point in metres, from the parts that made the surface there."""
    parts = person_parts(p, P)
    head = np.minimum.reduce([parts["face"], parts["hair"], parts["extra_hair"]])
    crown_y = P["cranium"]["c"][1] + 0.45 * P["cranium"]["r"][1]
    ear_front = max(E["z"] for E in P["ears"]) + 0.012
    labels = np.where(p[:, 2] > ear_front, 0, 2)  # face in front of the ear roots, back behind
    labels = np.where(p[:, 1] > crown_y, 3, labels)
    jaw_low = P["chin"]["c"][1]
    neck = (parts["neck"] < head - 0.002) & (p[:, 1] < jaw_low) & ~(parts["extra_hair"] < 0.004)
    labels = np.where(neck, 4, labels)
    return np.where(parts["ears"] < 0.004, 1, labels)


def _code_digest() -> str:
    """Hash of the builder's source as imported, so an edited builder never serves a stale cached mesh."""
    return _CODE_DIGEST


def _cache_dir() -> Path:
    root = os.environ.get("SPIN_TO_MESH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spin-to-mesh")
    return Path(root) / "synth-heads"


def _cached_mesh(key: dict, build) -> tuple[np.ndarray, np.ndarray]:
    """Load (vertices, faces) for `key` from the cache, or build and store them (atomic rename)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = _cache_dir() / f"{key.get('name', 'head')}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return z["vertices"], z["faces"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged file: rebuild it
    v, f = build()
    try:
        from spin_io.atomic import atomic_path

        with atomic_path(path) as tmp:
            np.savez(tmp, vertices=v, faces=f)
    except OSError:
        pass  # a read-only home: the head is just not cached
    return v, f


def person_head(
    name: str,
    voxel_m: float = DEFAULT_VOXEL_M,
    target_faces: int = 150_000,
    metres_per_unit: float = DEFAULT_METRES_PER_UNIT,
    cache: bool = True,
) -> GroundTruthHead:
    """One named head (see PEOPLE) as a closed, outward-oriented, edge-manifold mesh in ViewSet units.

    The head is placed so that the box from FRAME_BOTTOM_M up to its top is centred on the origin: a long
    neck runs below the frame instead of pushing the head up. `head.regions(points)` labels points in
    ViewSet units; `head.sdf(points)` is the signed distance in ViewSet units.
    """
    P = _person(name)
    key = {"name": name, "params": P, "voxel": voxel_m, "faces": target_faces, "version": BUILDER_VERSION,
           "code": _code_digest()}

    def build() -> tuple[np.ndarray, np.ndarray]:
        v, f = mesh_sdf(lambda q: person_sdf(q, P), GRID_LO, GRID_HI, voxel_m)
        if target_faces and len(f) > target_faces:
            v, f = _decimate(v, f, target_faces)
        return v, _orient_outward(v, f)

    v, f = _cached_mesh(key, build) if cache else build()
    above = v[v[:, 1] >= FRAME_BOTTOM_M]
    centre = 0.5 * (above.min(0) + above.max(0))
    centre[1] = 0.5 * (FRAME_BOTTOM_M + v[:, 1].max())
    s = metres_per_unit

    def to_m(points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) * s + centre

    info = {"params": copy.deepcopy(P), "centre_m": centre.tolist(), "voxel_m": voxel_m, "kind": "person",
            "ears": [{k: val.tolist() for k, val in _ear_frame(E, P).items()} | {"spec": E} for E in P["ears"]]}
    return GroundTruthHead(
        (v - centre) / s, np.asarray(f, np.int64), name, info,
        labeller=lambda pts: person_regions(to_m(pts), P),
        sdf=lambda pts: person_sdf(to_m(pts), P) / s,
    )


def people_heads(names: tuple[str, ...] = PEOPLE, **kwargs) -> list[GroundTruthHead]:
    """All named heads (cached after the first build)."""
    return [person_head(n, **kwargs) for n in names]


def _decimate(v: np.ndarray, f: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation; falls back to the full mesh if the result is not edge-manifold and closed."""
    import fast_simplification

    from recon.mesh_ops import edge_manifold_report

    for agg in (3, 1):  # gentler aggressiveness keeps the thin ears manifold
        vd, fd = fast_simplification.simplify(
            v.astype(np.float32), f.astype(np.int32), target_reduction=1 - target_faces / len(f), agg=agg
        )
        fd = np.asarray(fd, np.int64)
        rep = edge_manifold_report(fd)
        if not (rep["boundary_edges"] or rep["nonmanifold_edges"] or rep["misoriented_edges"]):
            break
    else:
        return v, f
    used = np.unique(fd)
    remap = np.full(len(vd), -1, np.int64)
    remap[used] = np.arange(len(used))
    return np.asarray(vd, np.float64)[used], remap[fd]
