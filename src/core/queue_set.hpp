// queue_set.hpp: which queues a commit enqueued into, as the ticker learns it.
//
// A committing backend names the queues whose event tables it wrote (PgQue
// and PgQ name them event_<queue_id>_<n>); the ticker then ticks those
// queues alone (pgque.ticker(queue)) instead of every queue of the
// database. The set is a fixed 1024-bit map of queue_id % 1024, so it fits
// in shared memory and is merged with atomic ORs; a collision (queue ids
// 1024 apart) only makes the ticker look at one more queue. A write it
// cannot attribute (COPY, force_tick(), COMMIT PREPARED) asks for a full
// ticker() call instead.
//
// PostgreSQL-free.
#pragma once

#include <cstdint>

namespace pqw {

struct QueueSet {
    static constexpr int kBits = 1024;
    static constexpr int kWords = kBits / 64;

    std::uint64_t words[kWords] = {};

    void add(std::int64_t queue_id) noexcept
    {
        std::uint64_t r = static_cast<std::uint64_t>(queue_id) % kBits;
        words[r / 64] |= std::uint64_t{1} << (r % 64);
    }
    bool empty() const noexcept
    {
        std::uint64_t any = 0;
        for (std::uint64_t w : words)
            any |= w;
        return any == 0;
    }
    // Whether a residue (queue_id % kBits, as residues() gives them) is in.
    bool has_residue(std::int32_t r) const noexcept
    {
        return r >= 0 && r < kBits && ((words[r / 64] >> (r % 64)) & 1U) != 0;
    }
    void merge(const QueueSet &o) noexcept
    {
        for (int i = 0; i < kWords; i++)
            words[i] |= o.words[i];
    }
    void clear() noexcept
    {
        for (std::uint64_t &w : words)
            w = 0;
    }
    // Writes the residues (queue_id % kBits) in the set into out[], at most
    // max of them, ascending; returns how many there are in all.
    int residues(std::int32_t *out, int max) const noexcept;
};

// The queue id of a PgQue/PgQ event table name: "event_<id>" or
// "event_<id>_<n>". -1 if the name is not shaped so.
std::int64_t event_table_queue_id(const char *relname) noexcept;

}  // namespace pqw
