// The hooks through which cuda_emulation.h and launcher.cpp tell access_counter.cpp what runs
// and where shared and device memory live (builds with ECA_EMU_COUNT_ACCESSES only).
#pragma once

#include <cstddef>

extern "C" {
void eca_emu_count_lane(long lane);  // the emulated thread now running; -1: the scheduler
void eca_emu_count_block_done();
void eca_emu_count_kernel(const char* name);
void eca_emu_count_shared(const void* p, std::size_t bytes);
void eca_emu_count_dynamic_shared(const void* p, std::size_t bytes);
void eca_emu_count_global(const void* p, std::size_t bytes);
}
