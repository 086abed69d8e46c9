# Read after TFLM's own Makefile (make -f Makefile -f flags.mk cnnedge_flags ...): prints the
# compiler, flags, include paths and libraries TFLM built its library with, so the firmware's own
# sources are compiled exactly as the library was.
cnnedge_flags:
	@echo "CXX=$(CXX)"
	@echo "CC=$(CC)"
	@echo "CXXFLAGS=$(CXXFLAGS) $(CORE_OPTIMIZATION_LEVEL)"
	@echo "CCFLAGS=$(CCFLAGS) $(CORE_OPTIMIZATION_LEVEL)"
	@echo "INCLUDES=$(INCLUDES)"
	@echo "LDFLAGS=$(LDFLAGS)"
	@echo "LIBS=$(MICROLITE_LIBS)"
	@echo "LIB=$(MICROLITE_LIB_PATH)"
