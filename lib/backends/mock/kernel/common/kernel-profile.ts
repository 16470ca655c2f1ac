/**
 * Which kernel the mock answers as: upstream 6.12 (no SEV VM types, legacy INIT), 7.2 (INIT2, the
 * VM types), or a kernel carrying the 2021 local-migration patch (LOCAL_SEND/RECEIVE at ids 22/23,
 * never merged upstream). Where kernels differ, the profile decides.
 */
export type KernelProfile = '6.12' | '7.2' | 'local-migration-2021';
