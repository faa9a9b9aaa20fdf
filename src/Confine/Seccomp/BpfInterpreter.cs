using System.Buffers.Binary;

namespace Confine.Seccomp;

/// <summary>
/// Runs a classic BPF program on a <c>struct seccomp_data</c>, as the kernel's seccomp does, so a compiled
/// program can be checked against its profile without loading it. Only what seccomp accepts is
/// implemented: 32-bit loads from the data, its length, scratch memory, ALU, jumps, returns.
/// </summary>
internal static class BpfInterpreter
{
    /// <summary>The size of one <c>struct sock_filter</c>: u16 code, u8 jt, u8 jf, u32 k.</summary>
    internal const int InstructionSize = 8;

    /// <summary>The kernel's limit on a filter's length (BPF_MAXINSNS).</summary>
    internal const int MaxInstructions = 4096;

    private const int SeccompDataSize = 64;

    // Instruction classes, sizes, modes and operations (linux/bpf_common.h).
    private const int BPF_LD = 0x00, BPF_LDX = 0x01, BPF_ST = 0x02, BPF_STX = 0x03;
    private const int BPF_ALU = 0x04, BPF_JMP = 0x05, BPF_RET = 0x06, BPF_MISC = 0x07;
    private const int BPF_W = 0x00;
    private const int BPF_IMM = 0x00, BPF_ABS = 0x20, BPF_MEM = 0x60, BPF_LEN = 0x80;
    private const int BPF_K = 0x00, BPF_X = 0x08, BPF_A = 0x10;
    private const int BPF_ADD = 0x00, BPF_SUB = 0x10, BPF_MUL = 0x20, BPF_DIV = 0x30, BPF_OR = 0x40;
    private const int BPF_AND = 0x50, BPF_LSH = 0x60, BPF_RSH = 0x70, BPF_NEG = 0x80, BPF_MOD = 0x90;
    private const int BPF_XOR = 0xa0;
    private const int BPF_JA = 0x00, BPF_JEQ = 0x10, BPF_JGT = 0x20, BPF_JGE = 0x30, BPF_JSET = 0x40;
    private const int BPF_TAX = 0x00, BPF_TXA = 0x80;
    private const int BPF_MEMWORDS = 16;

    /// <summary>The number of instructions in <paramref name="program"/>.</summary>
    internal static int InstructionCount(ReadOnlySpan<byte> program) => program.Length / InstructionSize;

    /// <summary>
    /// Whether some return of <paramref name="program"/> can give an action that kills (<c>SECCOMP_RET_KILL_PROCESS</c>
    /// or <c>SECCOMP_RET_KILL_THREAD</c>). A return of the accumulator, which libseccomp never writes, counts as one
    /// that can.
    /// </summary>
    internal static bool CanKill(ReadOnlySpan<byte> program)
    {
        for (int pc = 0; pc < InstructionCount(program); pc++)
        {
            ReadOnlySpan<byte> insn = program.Slice(pc * InstructionSize, InstructionSize);
            int code = BinaryPrimitives.ReadUInt16LittleEndian(insn);
            if ((code & 0x07) != BPF_RET)
            {
                continue;
            }

            uint action = BinaryPrimitives.ReadUInt32LittleEndian(insn[4..]) & SeccompInterop.SECCOMP_RET_ACTION_FULL;
            if ((code & 0x18) != BPF_K
                || action is SeccompInterop.SECCOMP_RET_KILL_PROCESS or SeccompInterop.SECCOMP_RET_KILL_THREAD)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Runs <paramref name="program"/> on a call; returns the <c>SECCOMP_RET_*</c> value it gives.</summary>
    /// <exception cref="InvalidDataException">The program is one seccomp would reject, or runs off its end.</exception>
    internal static uint Run(
        ReadOnlySpan<byte> program, int nr, uint arch, ulong instructionPointer, ReadOnlySpan<ulong> args) =>
        Run(program, nr, arch, instructionPointer, args, out _);

    /// <summary>Runs <paramref name="program"/>; <paramref name="executed"/> counts the instructions run.</summary>
    internal static uint Run(
        ReadOnlySpan<byte> program,
        int nr,
        uint arch,
        ulong instructionPointer,
        ReadOnlySpan<ulong> args,
        out int executed)
    {
        Span<byte> data = stackalloc byte[SeccompDataSize];
        BinaryPrimitives.WriteInt32LittleEndian(data, nr);
        BinaryPrimitives.WriteUInt32LittleEndian(data[4..], arch);
        BinaryPrimitives.WriteUInt64LittleEndian(data[8..], instructionPointer);
        for (int i = 0; i < 6; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data[(16 + (8 * i))..], i < args.Length ? args[i] : 0);
        }

        if (program.Length % InstructionSize != 0 || program.IsEmpty || InstructionCount(program) > MaxInstructions)
        {
            throw new InvalidDataException(
                $"a BPF program of {program.Length} bytes is not 1 to {MaxInstructions} instructions");
        }

        uint a = 0, x = 0;
        Span<uint> memory = stackalloc uint[BPF_MEMWORDS];
        int count = InstructionCount(program);
        executed = 0;
        for (int pc = 0; pc < count; pc++)
        {
            executed++;
            ReadOnlySpan<byte> insn = program.Slice(pc * InstructionSize, InstructionSize);
            int code = BinaryPrimitives.ReadUInt16LittleEndian(insn);
            int jt = insn[2];
            int jf = insn[3];
            uint k = BinaryPrimitives.ReadUInt32LittleEndian(insn[4..]);

            switch (code & 0x07)
            {
                case BPF_LD:
                    a = Load(code, k, data, memory, pc);
                    break;
                case BPF_LDX:
                    x = Load(code, k, data, memory, pc);
                    break;
                case BPF_ST:
                    memory[MemoryIndex(k, pc)] = a;
                    break;
                case BPF_STX:
                    memory[MemoryIndex(k, pc)] = x;
                    break;
                case BPF_ALU:
                    a = Alu(code, a, (code & BPF_X) != 0 ? x : k, pc);
                    break;
                case BPF_JMP:
                    pc += Jump(code, a, (code & BPF_X) != 0 ? x : k, k, jt, jf);
                    if (pc + 1 >= count)
                    {
                        throw new InvalidDataException($"BPF instruction {pc} jumps past the end");
                    }

                    break;
                case BPF_RET:
                    return (code & 0x18) switch
                    {
                        BPF_K => k,
                        BPF_A => a,
                        _ => throw new InvalidDataException($"BPF instruction {pc}: bad return 0x{code:x}"),
                    };
                case BPF_MISC:
                    if ((code & 0xf8) == BPF_TAX)
                    {
                        x = a;
                    }
                    else if ((code & 0xf8) == BPF_TXA)
                    {
                        a = x;
                    }
                    else
                    {
                        throw new InvalidDataException($"BPF instruction {pc}: bad misc 0x{code:x}");
                    }

                    break;
            }
        }

        throw new InvalidDataException("the BPF program ends without returning");
    }

    private static uint Load(int code, uint k, ReadOnlySpan<byte> data, ReadOnlySpan<uint> memory, int pc)
    {
        if ((code & 0x18) != BPF_W)
        {
            throw new InvalidDataException($"BPF instruction {pc}: seccomp loads only 32-bit words");
        }

        switch (code & 0xe0)
        {
            case BPF_IMM:
                return k;
            case BPF_ABS:
                if (k % 4 != 0 || k > SeccompDataSize - 4)
                {
                    throw new InvalidDataException($"BPF instruction {pc}: load at offset {k} is outside seccomp_data");
                }

                return BinaryPrimitives.ReadUInt32LittleEndian(data[(int)k..]);
            case BPF_MEM:
                return memory[MemoryIndex(k, pc)];
            case BPF_LEN:
                return SeccompDataSize;
            default:
                throw new InvalidDataException(
                    $"BPF instruction {pc}: load mode 0x{code & 0xe0:x} is not allowed in seccomp");
        }
    }

    private static int MemoryIndex(uint k, int pc) =>
        k < BPF_MEMWORDS ? (int)k : throw new InvalidDataException($"BPF instruction {pc}: scratch slot {k}");

    private static uint Alu(int code, uint a, uint operand, int pc) => (code & 0xf0) switch
    {
        BPF_ADD => a + operand,
        BPF_SUB => a - operand,
        BPF_MUL => a * operand,
        BPF_DIV => operand == 0 ? throw new InvalidDataException($"BPF instruction {pc} divides by 0") : a / operand,
        BPF_MOD => operand == 0 ? throw new InvalidDataException($"BPF instruction {pc} divides by 0") : a % operand,
        BPF_OR => a | operand,
        BPF_AND => a & operand,
        BPF_XOR => a ^ operand,
        BPF_LSH => operand >= 32 ? 0 : a << (int)operand,
        BPF_RSH => operand >= 32 ? 0 : a >> (int)operand,
        BPF_NEG => (uint)-(int)a,
        _ => throw new InvalidDataException($"BPF instruction {pc}: bad ALU operation 0x{code:x}"),
    };

    // How far past the next instruction to go.
    private static int Jump(int code, uint a, uint operand, uint k, int jt, int jf)
    {
        bool taken;
        switch (code & 0xf0)
        {
            case BPF_JA:
                return (int)k;
            case BPF_JEQ:
                taken = a == operand;
                break;
            case BPF_JGT:
                taken = a > operand;
                break;
            case BPF_JGE:
                taken = a >= operand;
                break;
            case BPF_JSET:
                taken = (a & operand) != 0;
                break;
            default:
                throw new InvalidDataException($"BPF jump 0x{code:x} is not a classic BPF jump");
        }

        return taken ? jt : jf;
    }
}
