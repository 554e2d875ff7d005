/* GRU recurrence for the tiny enhancer's CPU inference (see audioe2e/nets/gru_kernel.py).
 *
 * Why C: PyTorch's CPU GRU launches about ten small ops per time step and layer, so at a
 * 64-wide state dispatch overhead, not arithmetic, sets its speed; a JIT (numba) removes that
 * but costs about a second of start-up per process. This loop is the same math as
 * torch.nn.GRU, in float32, with no fast-math flags (exp may overflow to inf for a saturated
 * gate and 1/(1+inf) = 0 must stay exact):
 *   r = sig(gi_r + Whr h + bhr), z = sig(gi_z + Whz h + bhz)
 *   n = tanh(gi_n + r * (Whn h + bhn)), h' = n + z * (h - n)
 * The hidden-to-hidden product runs as an axpy over the 3H outputs (W_hh transposed), which
 * compilers vectorise without reassociating sums.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void run_layer(const float *gi, float *h, const float *whh_t, const float *bhh,
                      float *out, float *gh, Py_ssize_t batch, Py_ssize_t steps, Py_ssize_t hid)
{
    const Py_ssize_t g3 = 3 * hid;
    for (Py_ssize_t b = 0; b < batch; b++) {
        float *hb = h + b * hid;
        for (Py_ssize_t t = 0; t < steps; t++) {
            const float *git = gi + (b * steps + t) * g3;
            memcpy(gh, bhh, (size_t)g3 * sizeof(float));
            for (Py_ssize_t k = 0; k < hid; k++) {
                const float hk = hb[k];
                const float *wk = whh_t + k * g3;
                for (Py_ssize_t j = 0; j < g3; j++)
                    gh[j] += wk[j] * hk;
            }
            float *ot = out + (b * steps + t) * hid;
            for (Py_ssize_t j = 0; j < hid; j++) {
                const float r = 1.0f / (1.0f + expf(-(git[j] + gh[j])));
                const float z = 1.0f / (1.0f + expf(-(git[hid + j] + gh[hid + j])));
                const float n = tanhf(git[2 * hid + j] + r * gh[2 * hid + j]);
                hb[j] = n + z * (hb[j] - n);
                ot[j] = hb[j];
            }
        }
    }
}

static int check_len(Py_buffer *buf, Py_ssize_t n, const char *name)
{
    if (buf->len != n * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "gru_layer: %s has %zd bytes, expected %zd float32",
                     name, buf->len, n);
        return 0;
    }
    return 1;
}

/* gru_layer(gi, h, whh_t, bhh, out, batch, steps, hid): C-contiguous float32 buffers
 * gi [B, T, 3H], h [B, H] (updated in place), whh_t [H, 3H], bhh [3H], out [B, T, H]. */
static PyObject *gru_layer(PyObject *self, PyObject *args)
{
    Py_buffer gi, h, w, bias, out;
    Py_ssize_t batch, steps, hid;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*y*y*w*nnn", &gi, &h, &w, &bias, &out, &batch, &steps, &hid))
        return NULL;
    PyObject *result = NULL;
    float *gh = NULL;
    if (batch < 0 || steps < 0 || hid <= 0) {
        PyErr_SetString(PyExc_ValueError, "gru_layer: bad sizes");
        goto done;
    }
    if (!check_len(&gi, batch * steps * 3 * hid, "gi") || !check_len(&h, batch * hid, "h")
        || !check_len(&w, hid * 3 * hid, "whh_t") || !check_len(&bias, 3 * hid, "bhh")
        || !check_len(&out, batch * steps * hid, "out"))
        goto done;
    gh = (float *)malloc((size_t)(3 * hid) * sizeof(float));
    if (gh == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    run_layer((const float *)gi.buf, (float *)h.buf, (const float *)w.buf,
              (const float *)bias.buf, (float *)out.buf, gh, batch, steps, hid);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(gh);
    PyBuffer_Release(&gi);
    PyBuffer_Release(&h);
    PyBuffer_Release(&w);
    PyBuffer_Release(&bias);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"gru_layer", gru_layer, METH_VARARGS, "One GRU layer over a block (float32, in place)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gru", NULL, -1, methods};

PyMODINIT_FUNC PyInit__gru(void) { return PyModule_Create(&module); }
