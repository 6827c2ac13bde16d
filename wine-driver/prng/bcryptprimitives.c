/*
 * TEST ONLY: a stand-in bcryptprimitives.dll for Wine 8, which has none.
 *
 * Rust's std (1.78 and later) imports ProcessPrng from bcryptprimitives.dll
 * for its random numbers (HashMap seeds); without the DLL a Rust .exe does
 * not start under Wine 8 (status c0000135). `cargo xtask wine` builds this
 * file with mingw-w64 and places the DLL beside the test executables only,
 * inside the Wine prefix: it is never shipped.
 *
 * ProcessPrng(PBYTE, SIZE_T) fills the buffer with random bytes and always
 * returns TRUE (it cannot fail on Windows). Here it is advapi32's
 * SystemFunction036 (RtlGenRandom), taken in ULONG-sized pieces; should
 * that ever fail, the process ends rather than use bytes that are not
 * random.
 */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG piece = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!RtlGenRandom(data, piece))
            ExitProcess(0xC0000001);
        data += piece;
        length -= piece;
    }
    return TRUE;
}
